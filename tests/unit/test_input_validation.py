"""Input checks as AWS makes them: Lambda's Handler, S3 bucket names and keys, and the JSON nesting bound."""

from __future__ import annotations

import json

import pytest

from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue
from squall.functions.control.validation import check_handler
from squall.s3.errors import InvalidArgument, InvalidBucketName, KeyTooLong
from squall.s3.store.base import check_bucket_name, check_key


@pytest.mark.parametrize("value", ["app.handler", "dir/app.handler", "a.b.c", "x" * 128, "app.handler\u00a0"])
def test_handlers_lambda_accepts(value: str) -> None:
    assert check_handler(value) == value


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        ("app.handler\n", r"regular expression pattern: [^\s]+"),
        ("app.handler ", r"regular expression pattern: [^\s]+"),
        ("app .handler", r"regular expression pattern: [^\s]+"),
        ("\tapp.handler", r"regular expression pattern: [^\s]+"),
        ("app.handler\r", r"regular expression pattern: [^\s]+"),
        ("x" * 129, "length less than or equal to 128"),
    ],
)
def test_handlers_lambda_refuses(value: str, constraint: str) -> None:
    with pytest.raises(InvalidParameterValue) as ei:
        check_handler(value)
    assert constraint in ei.value.message and "'handler'" in ei.value.message


@pytest.mark.parametrize(
    "name",
    ["abc", "my-bucket", "my.bucket.name", "a" * 63, "0bucket9", "xn-abc", "bucket-s3alia", "sthree", "x--ol-s3a"],
)
def test_bucket_names_s3_accepts(name: str) -> None:
    check_bucket_name(name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ab", "between 3 and 63"),
        ("a" * 64, "between 3 and 63"),
        ("My-Bucket", "lower-case"),
        ("-bucket", "begin and end"),
        ("bucket-", "begin and end"),
        ("bucket_name", "lower-case"),
        ("my..bucket", "'..'"),
        ("192.168.5.4", "IP address"),
        ("xn--abc", "'xn--'"),
        ("sthree-bucket", "'sthree-'"),
        ("amzn-s3-demo-bucket", "'amzn-s3-demo-'"),
        ("bucket-s3alias", "'-s3alias'"),
        ("bucket--ol-s3", "'--ol-s3'"),
        ("bucket.mrap", "'.mrap'"),
        ("bucket--x-s3", "'--x-s3'"),
        ("bucket--table-s3", "'--table-s3'"),
    ],
)
def test_bucket_names_s3_refuses(name: str, why: str) -> None:
    with pytest.raises(InvalidBucketName) as ei:
        check_bucket_name(name)
    assert why in ei.value.message


def test_object_keys_up_to_1024_utf8_bytes() -> None:
    assert check_key("k" * 1024) == b"k" * 1024
    assert check_key("é" * 512) == "é".encode() * 512  # 1024 bytes, 512 characters
    with pytest.raises(KeyTooLong):
        check_key("é" * 513)
    with pytest.raises(KeyTooLong):
        check_key("k" * 1025)
    with pytest.raises(InvalidArgument):
        check_key("")
    with pytest.raises(InvalidArgument):
        check_key("bad\udc80surrogate")


@pytest.mark.parametrize(
    ("doc", "depth"),
    [
        (b"{}", 1),
        (b"[[[]]]", 3),
        (b'{"a": [1, {"b": [2, 3]}], "c": {}}', 4),
        (b'["[[[[[[[[[[", "{{{{{{{{{{{{"]', 1),  # brackets in strings do not count
        (b'["\\"[[[[[[[[[", "x\\\\", [[]]]', 3),  # nor after escaped quotes
        (b"[" * 200 + b"]" * 200, 200),
        ("[" * 50 + '"é"' + "]" * 50, 50),
    ],
)
def test_json_depth(doc: bytes | str, depth: int) -> None:
    assert not jsonlimits.json_depth_exceeds(doc, depth)
    assert jsonlimits.json_depth_exceeds(doc, depth - 1)
    if depth <= 64:
        assert jsonlimits.loads(doc) == json.loads(doc)


def test_json_depth_check_is_linear_on_hostile_strings() -> None:
    """Unterminated strings full of escaped quotes: a regex over strings took 73 s for 40 KB of this."""
    hostile = b"[" * 100 + b'"' + b'\\"' * 3_000_000
    assert jsonlimits.json_depth_exceeds(hostile, 64)
    assert not jsonlimits.json_depth_exceeds(b'"' + b"[" * 100 + b'\\"' * 3_000_000, 64)  # all inside a string


def test_json_too_deep_is_a_value_error_with_a_clear_message() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(deep)  # what every JSON input did before
    with pytest.raises(jsonlimits.JsonTooDeep) as ei:
        jsonlimits.loads(deep)
    assert isinstance(ei.value, ValueError)
    assert "more than 64 levels deep" in str(ei.value)
    with pytest.raises(jsonlimits.JsonTooDeep):
        jsonlimits.loads(b"[" * 100_000)  # unbalanced too
    wide = json.dumps([[i, {"k": [i]}] for i in range(10_000)])
    assert jsonlimits.loads(wide) == json.loads(wide)
    assert jsonlimits.loads(b"[" * 512 + b"]" * 512, max_depth=jsonlimits.MAX_PAYLOAD_DEPTH)
