"""The S3 errors of the object store, each with S3's own code and status.

``squall.aws.errors.render("s3", error, ...)`` renders them as S3's XML error document; ``details`` become
extra elements of that document (``<Key>``, ``<BucketName>``, ``<ActualObjectSize>``, ...), as S3 sends them.
"""

from __future__ import annotations

from collections.abc import Mapping

from squall.aws.errors import AwsClientError

__all__ = [
    "BadDigest",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "EntityTooSmall",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidDigest",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRange",
    "InvalidRequest",
    "InvalidURI",
    "KeyTooLong",
    "MalformedXML",
    "MethodNotAllowed",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NotImplementedOperation",
    "NotModified",
    "PreconditionFailed",
    "S3Error",
]


class S3Error(AwsClientError):
    """An error with an S3 error code (``code``) and status; ``details`` are extra XML elements."""

    code = "InvalidRequest"


class NoSuchBucket(S3Error):
    code = "NoSuchBucket"
    status = 404

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"The specified bucket does not exist: {bucket!r}. Create it first (aws s3 mb s3://{bucket}).",
            {"BucketName": bucket},
        )


class NoSuchKey(S3Error):
    code = "NoSuchKey"
    status = 404

    def __init__(self, key: str) -> None:
        super().__init__("The specified key does not exist.", {"Key": key})


class NoSuchUpload(S3Error):
    code = "NoSuchUpload"
    status = 404

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have "
            "been aborted or completed.",
            {"UploadId": upload_id},
        )


class BucketAlreadyOwnedByYou(S3Error):
    code = "BucketAlreadyOwnedByYou"
    status = 409

    def __init__(self, bucket: str) -> None:
        super().__init__(
            "Your previous request to create the named bucket succeeded and you already own it.",
            {"BucketName": bucket},
        )


class BucketNotEmpty(S3Error):
    code = "BucketNotEmpty"
    status = 409

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"The bucket you tried to delete is not empty: delete its objects first (aws s3 rm s3://{bucket} "
            "--recursive).",
            {"BucketName": bucket},
        )


class InvalidBucketName(S3Error):
    code = "InvalidBucketName"

    def __init__(self, bucket: str, why: str) -> None:
        super().__init__(f"The specified bucket is not valid: {why}", {"BucketName": bucket})


class KeyTooLong(S3Error):
    code = "KeyTooLongError"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"Your key is too long: {size} bytes in UTF-8, the maximum is 1024.",
            {"Size": str(size), "MaxSizeAllowed": "1024"},
        )


class InvalidRange(S3Error):
    code = "InvalidRange"
    status = 416

    def __init__(self, requested: str, size: int) -> None:
        super().__init__(
            "The requested range is not satisfiable",
            {"RangeRequested": requested, "ActualObjectSize": str(size)},
        )


class InvalidPart(S3Error):
    code = "InvalidPart"


class InvalidPartOrder(S3Error):
    code = "InvalidPartOrder"


class EntityTooSmall(S3Error):
    code = "EntityTooSmall"


class MalformedXML(S3Error):
    code = "MalformedXML"

    def __init__(self, message: str = "", details: Mapping[str, str] | None = None) -> None:
        super().__init__(
            message or "The XML you provided was not well-formed or did not validate against our published schema.",
            details,
        )


class InvalidArgument(S3Error):
    code = "InvalidArgument"


class InvalidRequest(S3Error):
    code = "InvalidRequest"


class InvalidURI(S3Error):
    code = "InvalidURI"


class BadDigest(S3Error):
    code = "BadDigest"


class InvalidDigest(S3Error):
    code = "InvalidDigest"


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    status = 412

    def __init__(self, condition: str) -> None:
        super().__init__("At least one of the pre-conditions you specified did not hold", {"Condition": condition})


class NotModified(S3Error):
    """Not an error to the client: rendered as a bodiless 304."""

    code = "NotModified"
    status = 304

    def __init__(self) -> None:
        super().__init__("Not Modified")


class MethodNotAllowed(S3Error):
    code = "MethodNotAllowed"
    status = 405


class NotImplementedOperation(S3Error):
    code = "NotImplemented"
    status = 501
