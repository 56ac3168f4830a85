"""The showcase end to end: examples/thumbnails (Pillow vendored from PyPI) on a real ``squall up``; JPEGs uploaded
under originals/ become 300x300 JPEG thumbnails under thumbnails/, other prefixes are left alone."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e._platform import SquallProcess, eventually, signed_get

from squall.cli.packaging import build_package
from squall.cli.project import load_project
from squall.core.errors import SquallError
from squall.iam.roles import ensure_role

Image = pytest.importorskip("PIL.Image", reason="the test makes its JPEGs with Pillow (pip install Pillow)")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "thumbnails"


def jpeg(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    try:
        data, _ = build_package(EXAMPLE, EXAMPLE / "requirements.txt", tmp_path_factory.mktemp("build-cache"))
    except SquallError as e:
        pytest.skip(f"could not vendor Pillow with pip: {e.message.splitlines()[0]}")
    return data


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    p = SquallProcess(Path(tmp_path_factory.mktemp("thumbs")) / "data").start()
    yield p
    p.stop()


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_thumbnail_on_upload(squall: SquallProcess, package: bytes) -> None:
    lam = squall.client("lambda")
    s3 = squall.client("s3", s3={"addressing_style": "path"})
    # the role examples/thumbnails/squall.yaml declares: read originals, write thumbnails, nothing else
    policies = load_project(EXAMPLE / "squall.yaml").function("thumbnails").policies
    role, _ = ensure_role(squall.client("iam"), "thumbnails", policies)
    fn = lam.create_function(
        FunctionName="thumbnails", Runtime="python3.11", Role=role,
        Handler="app.handler", Code={"ZipFile": package}, MemorySize=512, Timeout=30,
    )  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="thumbnails")
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_notification_configuration(
        Bucket="photos",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "LambdaFunctionArn": fn["FunctionArn"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "originals/"}]}},
                }
            ]
        },
    )
    photos = {
        "wide.jpg": jpeg(1200, 400, (200, 30, 30)),
        "tall.jpg": jpeg(350, 900, (30, 200, 30)),
        "my holiday photo.jpg": jpeg(64, 48, (30, 30, 200)),  # smaller than the thumbnail: scaled up
    }
    for name, data in photos.items():
        s3.put_object(Bucket="photos", Key=f"originals/{name}", Body=data, ContentType="image/jpeg")
    s3.put_object(Bucket="photos", Key="other/ignored.jpg", Body=jpeg(500, 500, (0, 0, 0)))

    want = sorted(f"thumbnails/{n}" for n in photos)
    eventually(lambda: keys(s3, "photos", "thumbnails/") == want, timeout_s=90, what="three thumbnails")
    for name, original in photos.items():
        obj = s3.get_object(Bucket="photos", Key=f"thumbnails/{name}")
        assert obj["ContentType"] == "image/jpeg"
        with Image.open(io.BytesIO(obj["Body"].read())) as img:
            assert img.format == "JPEG"
            assert img.size == (300, 300)
            # the cover fit keeps the colour of the (single-colour) original
            with Image.open(io.BytesIO(original)) as src:
                expected = src.getpixel((src.width // 2, src.height // 2))
            got = img.getpixel((150, 150))
            assert all(abs(a - b) < 12 for a, b in zip(got, expected, strict=True)), (name, got, expected)

    # exactly one successful invocation per upload under originals/, none for other/
    def records() -> list[dict[str, Any]]:
        status, body = signed_get(squall.url, "/_squall/api/invocations?function=thumbnails&limit=100")
        assert status == 200, body
        return list(body["invocations"])

    done = eventually(lambda: (r := records()) and len(r) >= 3 and r, what="invocation records")
    assert len(done) == 3
    assert all(r["status"] == "ok" and r["trigger"] == "s3" for r in done), done
    assert keys(s3, "photos", "other/") == ["other/ignored.jpg"]
    assert keys(s3, "photos", "thumbnails/") == want
