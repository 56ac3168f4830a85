"""The S3 operations: one blocking method per API call, from a decoded ``S3Request`` to an ``S3Response``.

They run in a worker thread (the store does file and SQLite I/O); ``squall.s3.api`` routes requests to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import quote

from squall.core.timefmt import iso_ms
from squall.s3 import xml as s3_xml
from squall.s3.errors import BadDigest, InvalidArgument, InvalidRequest
from squall.s3.http import (
    S3Request,
    S3Response,
    attrs_from_headers,
    check_conditions,
    content_md5,
    object_headers,
    parse_copy_source,
    parse_range,
    payload,
)
from squall.s3.store.objects import EventOrigin, ObjectStore

__all__ = ["S3Operations"]

_XML = {"Content-Type": "application/xml"}
#: GetObject answers up to this many bytes from memory (read in the handler's thread); larger ones are streamed
ONE_SEND_GET_MAX = 256 * 1024


def _int_param(request: S3Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise InvalidArgument(
            f"Provided {name} not an integer or within integer range", {"ArgumentName": name, "ArgumentValue": raw}
        )
    return value if high is None else min(value, high)


def _upload_id(request: S3Request) -> str:
    upload_id = request.query.get("uploadId", "")
    if not upload_id:
        raise InvalidArgument("This operation needs the uploadId of a multipart upload.", {"ArgumentName": "uploadId"})
    return upload_id


def _xml(body: bytes, status: int = 200) -> S3Response:
    return S3Response(status, dict(_XML), body)


def _check_body_md5(request: S3Request, body: bytes) -> None:
    expected = content_md5(request.headers)
    if expected is not None and hashlib.md5(body).digest() != expected:
        raise BadDigest("The Content-MD5 you specified did not match what we received.")


class S3Operations:
    def __init__(
        self,
        store: ObjectStore,
        *,
        region: str = "us-east-1",
        function_exists: Callable[[str], bool] | None = None,
        queue_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.region = region
        self.function_exists = function_exists
        self.queue_exists = queue_exists

    @staticmethod
    def _origin(request: S3Request) -> EventOrigin:
        principal = request.auth.access_key_id if request.auth is not None else ""
        return EventOrigin(request_id=request.request_id, source_ip=request.client_ip, principal_id=principal)

    # ------------------------------------------------------------------------------------------------ buckets

    def list_buckets(self, request: S3Request) -> S3Response:
        return _xml(s3_xml.list_buckets(self.store.list_buckets()))

    def create_bucket(self, request: S3Request) -> S3Response:
        location = s3_xml.parse_location(payload(request))
        region = location or (request.auth.region if request.auth is not None else "") or self.region
        self.store.create_bucket(request.bucket, region)
        return S3Response(200, {"Location": "/" + request.bucket})

    def head_bucket(self, request: S3Request) -> S3Response:
        bucket = self.store.get_bucket(request.bucket)
        return S3Response(200, {"x-amz-bucket-region": bucket.region, "Content-Type": "application/xml"})

    def delete_bucket(self, request: S3Request) -> S3Response:
        self.store.delete_bucket(request.bucket)
        return S3Response(204)

    def get_bucket_location(self, request: S3Request) -> S3Response:
        region = self.store.get_bucket(request.bucket).region
        return _xml(s3_xml.document(("LocationConstraint", "" if region == "us-east-1" else region)))

    def get_bucket_versioning(self, request: S3Request) -> S3Response:
        self.store.get_bucket(request.bucket)
        return _xml(s3_xml.document(("VersioningConfiguration", [])))

    def get_notification(self, request: S3Request) -> S3Response:
        return _xml(s3_xml.notification_document(self.store.get_bucket_notification(request.bucket)))

    def put_notification(self, request: S3Request) -> S3Response:
        body = payload(request)
        _check_body_md5(request, body)
        config = s3_xml.parse_notification(body)
        self.store.put_bucket_notification(
            request.bucket, config, function_exists=self.function_exists, queue_exists=self.queue_exists
        )
        return S3Response(200)

    # ------------------------------------------------------------------------------------------------ listing

    def list_objects(self, request: S3Request, *, v2: bool) -> S3Response:
        q = request.query
        encode = q.get("encoding-type", "") == "url"
        if q.get("encoding-type") not in (None, "", "url"):
            raise InvalidArgument("Invalid Encoding Method specified in Request", {"ArgumentName": "encoding-type"})
        max_keys = _int_param(request, "max-keys", 1000, 0, 1000)
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        if v2:
            token = q.get("continuation-token")
            if token == "":
                raise InvalidArgument(
                    "The continuation token provided is incorrect", {"ArgumentName": "continuation-token"}
                )
            result = self.store.list_objects_v2(
                request.bucket,
                prefix=prefix,
                delimiter=delimiter,
                start_after=q.get("start-after", ""),
                continuation_token=token,
                max_keys=max_keys,
                fetch_owner=q.get("fetch-owner", "").lower() == "true",
            )
            body = s3_xml.list_objects(
                request.bucket,
                result,
                v2=True,
                prefix=prefix,
                delimiter=delimiter,
                max_keys=max_keys,
                encode=encode,
                start_after=q.get("start-after", ""),
                continuation_token=token,
            )
        else:
            marker = q.get("marker", "")
            result = self.store.list_objects(
                request.bucket, prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys
            )
            body = s3_xml.list_objects(
                request.bucket,
                result,
                v2=False,
                prefix=prefix,
                delimiter=delimiter,
                max_keys=max_keys,
                encode=encode,
                marker=marker,
            )
        return _xml(body)

    # ------------------------------------------------------------------------------------------------ objects

    def put_object(self, request: S3Request) -> S3Response:
        data = payload(request)
        meta = self.store.put_object(
            request.bucket,
            request.key,
            data,
            attrs=attrs_from_headers(request.headers),
            expected_md5=content_md5(request.headers),
            if_none_match=request.header("if-none-match").strip() == "*",
            origin=self._origin(request),
        )
        return S3Response(200, {"ETag": meta.etag})

    def get_object(self, request: S3Request, *, head: bool = False) -> S3Response:
        if "partNumber" in request.query:
            raise InvalidRequest("GetObject with partNumber is not supported by Squall; use a Range instead.")
        range_header = request.header("range")
        spec = parse_range(range_header) if range_header else None
        body = self.store.get_object(request.bucket, request.key)
        try:
            check_conditions(request.headers, body.meta)
            body.select(spec, range_header)
        except BaseException:
            body.close()
            raise
        headers = object_headers(body.meta, request.query)
        status = 200
        if body.ranged:
            status = 206
            headers["Content-Range"] = body.content_range
        headers["Content-Length"] = str(body.length)
        if head:
            body.close()
            return S3Response(status, headers)
        if body.length <= ONE_SEND_GET_MAX:
            # read it here, in the worker thread already running this handler: the response then goes out in one
            # send, without a second thread hop per chunk (most objects a function reads are this small)
            with body:
                return S3Response(status, headers, body.read())
        return S3Response(status, headers, stream=body)

    def delete_object(self, request: S3Request) -> S3Response:
        self.store.delete_object(request.bucket, request.key, origin=self._origin(request))
        return S3Response(204)

    def delete_objects(self, request: S3Request) -> S3Response:
        body = payload(request)
        _check_body_md5(request, body)
        keys, quiet = s3_xml.parse_delete(body)
        results = self.store.delete_objects(request.bucket, keys, origin=self._origin(request))
        return _xml(s3_xml.delete_result(results, quiet))

    def copy_object(self, request: S3Request) -> S3Response:
        src_bucket, src_key = parse_copy_source(request.header("x-amz-copy-source"))
        directive = request.header("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise InvalidArgument(
                "Unknown metadata directive.",
                {"ArgumentName": "x-amz-metadata-directive", "ArgumentValue": directive},
            )
        source = self.store.head_object(src_bucket, src_key)
        check_conditions(request.headers, source, "x-amz-copy-source-", copy=True)
        same = (src_bucket, src_key) == (request.bucket, request.key)
        if same and directive == "COPY":
            raise InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing "
                "the object's metadata, storage class, website redirect location or encryption attributes."
            )
        attrs = attrs_from_headers(request.headers) if directive == "REPLACE" else None
        meta = self.store.copy_object(
            src_bucket, src_key, request.bucket, request.key, attrs=attrs, origin=self._origin(request)
        )
        return _xml(s3_xml.copy_result("CopyObjectResult", meta))

    # ------------------------------------------------------------------------------------------------ multipart

    def create_multipart_upload(self, request: S3Request) -> S3Response:
        upload = self.store.create_multipart_upload(request.bucket, request.key, attrs_from_headers(request.headers))
        return _xml(
            s3_xml.document(
                (
                    "InitiateMultipartUploadResult",
                    [("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id)],
                )
            )
        )

    def _part_number(self, request: S3Request) -> int:
        return _int_param(request, "partNumber", 0, 1)

    def upload_part(self, request: S3Request) -> S3Response:
        number = self._part_number(request)
        upload_id = _upload_id(request)
        if "x-amz-copy-source" in request.headers:
            return self._upload_part_copy(request, number, upload_id)
        part = self.store.upload_part(
            request.bucket,
            request.key,
            upload_id,
            number,
            payload(request),
            expected_md5=content_md5(request.headers),
        )
        return S3Response(200, {"ETag": part.etag})

    def _upload_part_copy(self, request: S3Request, number: int, upload_id: str) -> S3Response:
        src_bucket, src_key = parse_copy_source(request.header("x-amz-copy-source"))
        source = self.store.head_object(src_bucket, src_key)
        check_conditions(request.headers, source, "x-amz-copy-source-", copy=True)
        byte_range: tuple[int, int] | None = None
        raw_range = request.header("x-amz-copy-source-range")
        if raw_range:
            spec = parse_range(raw_range)
            if spec is None or spec[0] is None or spec[1] is None:
                raise InvalidArgument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last.",
                    {"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": raw_range},
                )
            byte_range = (spec[0], spec[1])
        self.store.get_upload(request.bucket, request.key, upload_id)
        part = self.store.upload_part_copy(
            request.bucket, request.key, upload_id, number, src_bucket, src_key, byte_range
        )
        body = s3_xml.document(("CopyPartResult", [("LastModified", iso_ms(part.last_modified)), ("ETag", part.etag)]))
        return _xml(body)

    def complete_multipart_upload(self, request: S3Request) -> S3Response:
        parts = s3_xml.parse_complete(payload(request))
        meta = self.store.complete_multipart_upload(
            request.bucket, request.key, _upload_id(request), parts, origin=self._origin(request)
        )
        location = f"{request.scheme}://{request.host}/{request.bucket}/{quote(request.key, safe='/')}"
        body = s3_xml.document(
            (
                "CompleteMultipartUploadResult",
                [("Location", location), ("Bucket", meta.bucket), ("Key", meta.key), ("ETag", meta.etag)],
            )
        )
        return _xml(body)

    def abort_multipart_upload(self, request: S3Request) -> S3Response:
        self.store.abort_multipart_upload(request.bucket, request.key, _upload_id(request))
        return S3Response(204)

    def list_parts(self, request: S3Request) -> S3Response:
        upload = self.store.get_upload(request.bucket, request.key, _upload_id(request))
        marker = _int_param(request, "part-number-marker", 0, 0)
        max_parts = _int_param(request, "max-parts", 1000, 0, 1000)
        parts, truncated = self.store.list_parts(
            request.bucket, request.key, upload.upload_id, part_number_marker=marker, max_parts=max_parts
        )
        return _xml(s3_xml.list_parts(upload, parts, truncated, marker, max_parts))

    def list_uploads(self, request: S3Request) -> S3Response:
        prefix = request.query.get("prefix", "")
        max_uploads = _int_param(request, "max-uploads", 1000, 0, 1000)
        uploads, truncated = self.store.list_uploads(request.bucket, prefix=prefix, max_uploads=max_uploads)
        return _xml(s3_xml.list_uploads(request.bucket, uploads, truncated, prefix, max_uploads))
