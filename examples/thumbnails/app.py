"""Thumbnail on upload: S3 ObjectCreated events on ``originals/`` -> a 300x300 JPEG under ``thumbnails/``.

A Python port of the classic AWS Lambda tutorial function.  It runs unchanged on AWS Lambda and on Squall
(Squall sets AWS_ENDPOINT_URL and credentials in the function's environment, so ``boto3.client("s3")`` talks to it).
"""

import io
import logging
import os
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from PIL import Image, ImageOps

logger = logging.getLogger()
logger.setLevel(logging.INFO)

SIZE = (300, 300)
SOURCE_PREFIX = "originals/"
TARGET_PREFIX = "thumbnails/"

# created once per instance and reused by every invocation it serves
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))


def make_thumbnail(data: bytes) -> bytes:
    """Crop-and-scale the image to fill SIZE exactly (a "cover" fit), as JPEG."""
    with Image.open(io.BytesIO(data)) as img:
        # JPEG: decode at the smallest DCT scale (1/2, 1/4, 1/8) that still covers SIZE -- 8x less work for a
        # 12-megapixel phone photo, and no loss at thumbnail size
        img.draft("RGB", SIZE)
        img = ImageOps.exif_transpose(img)
        thumb = ImageOps.fit(img.convert("RGB"), SIZE, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def handler(event, context):
    done = []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        if not key.startswith(SOURCE_PREFIX):
            logger.info("skipping %s: not under %s", key, SOURCE_PREFIX)
            continue
        target = TARGET_PREFIX + key[len(SOURCE_PREFIX) :]

        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        thumbnail = make_thumbnail(original)
        s3.put_object(Bucket=bucket, Key=target, Body=thumbnail, ContentType="image/jpeg")

        logger.info("s3://%s/%s -> s3://%s/%s (%d bytes)", bucket, key, bucket, target, len(thumbnail))
        done.append({"source": key, "thumbnail": target, "bytes": len(thumbnail)})
    return {"thumbnails": done, "region": os.environ.get("AWS_REGION")}
