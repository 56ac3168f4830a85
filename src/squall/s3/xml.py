"""S3's XML documents: building responses and parsing request bodies, exactly as botocore's rest-xml
serialiser writes them and its parser reads them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from squall.core.timefmt import iso_ms
from squall.s3.errors import MalformedXML, S3Error
from squall.s3.store.objects import OWNER_ID, Bucket, ListResult, ObjectMeta, Part, Upload

__all__ = [
    "NAMESPACE",
    "Node",
    "copy_result",
    "delete_result",
    "document",
    "list_buckets",
    "list_objects",
    "list_parts",
    "list_uploads",
    "notification_document",
    "parse_complete",
    "parse_delete",
    "parse_location",
    "parse_notification",
]

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
OWNER_NAME = "squall"

#: An element: (name, text) or (name, children).  None children are skipped.
Node = tuple[str, "str | Sequence[Node | None]"]

_NOTIFICATION_XML = {
    "LambdaFunctionConfigurations": ("CloudFunctionConfiguration", "LambdaFunctionArn", "CloudFunction"),
    "QueueConfigurations": ("QueueConfiguration", "QueueArn", "Queue"),
    "TopicConfigurations": ("TopicConfiguration", "TopicArn", "Topic"),
}


# --------------------------------------------------------------------------------------------------- building


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
    )


def _render(node: Node, out: list[str], xmlns: bool = False) -> None:
    name, value = node
    attrs = f' xmlns="{NAMESPACE}"' if xmlns else ""
    if isinstance(value, str):
        out.append(f"<{name}{attrs}>{_escape(value)}</{name}>" if value else f"<{name}{attrs}/>")
        return
    children = [c for c in value if c is not None]
    if not children:
        out.append(f"<{name}{attrs}/>")
        return
    out.append(f"<{name}{attrs}>")
    for child in children:
        _render(child, out)
    out.append(f"</{name}>")


def document(node: Node, *, xmlns: bool = True) -> bytes:
    """A complete XML document whose root carries S3's namespace."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _render(node, out, xmlns)
    return "".join(out).encode("utf-8")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _owner(name: str = "Owner") -> Node:
    return name, [("ID", OWNER_ID), ("DisplayName", OWNER_NAME)]


def list_buckets(buckets: Iterable[Bucket]) -> bytes:
    items: list[Node | None] = [
        ("Bucket", [("Name", b.name), ("CreationDate", iso_ms(b.created)), ("BucketRegion", b.region)]) for b in buckets
    ]
    return document(("ListAllMyBucketsResult", [_owner(), ("Buckets", items)]))


def _contents(meta: ObjectMeta, encode: bool, owner: bool) -> Node:
    return (
        "Contents",
        [
            ("Key", _enc(meta.key, encode)),
            ("LastModified", iso_ms(meta.last_modified)),
            ("ETag", meta.etag),
            ("Size", str(meta.size)),
            _owner() if owner else None,
            ("StorageClass", "STANDARD"),
        ],
    )


def _enc(value: str, encode: bool) -> str:
    return quote(value, safe="/") if encode else value


def list_objects(
    bucket: str,
    result: ListResult,
    *,
    v2: bool,
    prefix: str,
    delimiter: str,
    max_keys: int,
    encode: bool,
    marker: str = "",
    start_after: str = "",
    continuation_token: str | None = None,
) -> bytes:
    """ListBucketResult of ListObjectsV2 (``v2``) or ListObjects."""
    head: list[Node | None] = [("Name", bucket), ("Prefix", _enc(prefix, encode))]
    if v2:
        head += [
            ("Delimiter", _enc(delimiter, encode)) if delimiter else None,
            ("MaxKeys", str(max_keys)),
            ("EncodingType", "url") if encode else None,
            ("KeyCount", str(result.key_count)),
            ("IsTruncated", _bool(result.is_truncated)),
            ("ContinuationToken", continuation_token) if continuation_token is not None else None,
            ("NextContinuationToken", result.next_token) if result.next_token else None,
            ("StartAfter", _enc(start_after, encode)) if start_after else None,
        ]
    else:
        head += [
            ("Marker", _enc(marker, encode)),
            ("NextMarker", _enc(result.next_marker, encode)) if result.next_marker else None,
            ("MaxKeys", str(max_keys)),
            ("Delimiter", _enc(delimiter, encode)) if delimiter else None,
            ("EncodingType", "url") if encode else None,
            ("IsTruncated", _bool(result.is_truncated)),
        ]
    owner = result.owner_id is not None
    head += [_contents(m, encode, owner) for m in result.contents]
    head += [("CommonPrefixes", [("Prefix", _enc(p, encode))]) for p in result.common_prefixes]
    return document(("ListBucketResult", head))


def copy_result(root: str, meta: ObjectMeta) -> bytes:
    """CopyObjectResult / CopyPartResult."""
    return document((root, [("LastModified", iso_ms(meta.last_modified)), ("ETag", meta.etag)]))


def list_parts(upload: Upload, parts: Sequence[Part], truncated: bool, marker: int, max_parts: int) -> bytes:
    items: list[Node | None] = [
        ("Bucket", upload.bucket),
        ("Key", upload.key),
        ("UploadId", upload.upload_id),
        _owner("Initiator"),
        _owner(),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", str(marker)),
        ("NextPartNumberMarker", str(parts[-1].part_number if parts else marker)),
        ("MaxParts", str(max_parts)),
        ("IsTruncated", _bool(truncated)),
    ]
    items += [
        (
            "Part",
            [
                ("PartNumber", str(p.part_number)),
                ("LastModified", iso_ms(p.last_modified)),
                ("ETag", p.etag),
                ("Size", str(p.size)),
            ],
        )
        for p in parts
    ]
    return document(("ListPartsResult", items))


def list_uploads(bucket: str, uploads: Sequence[Upload], truncated: bool, prefix: str, max_uploads: int) -> bytes:
    items: list[Node | None] = [
        ("Bucket", bucket),
        ("KeyMarker", ""),
        ("UploadIdMarker", ""),
        ("NextKeyMarker", uploads[-1].key if truncated else ""),
        ("NextUploadIdMarker", uploads[-1].upload_id if truncated else ""),
        ("Prefix", prefix),
        ("MaxUploads", str(max_uploads)),
        ("IsTruncated", _bool(truncated)),
    ]
    items += [
        (
            "Upload",
            [
                ("Key", u.key),
                ("UploadId", u.upload_id),
                _owner("Initiator"),
                _owner(),
                ("StorageClass", "STANDARD"),
                ("Initiated", iso_ms(u.initiated)),
            ],
        )
        for u in uploads
    ]
    return document(("ListMultipartUploadsResult", items))


def delete_result(results: Sequence[tuple[str, S3Error | None]], quiet: bool) -> bytes:
    items: list[Node | None] = []
    for key, error in results:
        if error is None:
            if not quiet:
                items.append(("Deleted", [("Key", key)]))
        else:
            items.append(("Error", [("Key", key), ("Code", error.code), ("Message", error.message)]))
    return document(("DeleteResult", items))


def notification_document(config: dict[str, Any]) -> bytes:
    """NotificationConfiguration as GetBucketNotificationConfiguration returns it."""
    items: list[Node | None] = []
    for list_name, (element, arn_field, arn_element) in _NOTIFICATION_XML.items():
        for conf in config.get(list_name) or []:
            children: list[Node | None] = [("Id", str(conf.get("Id", ""))), (arn_element, str(conf[arn_field]))]
            children += [("Event", str(e)) for e in conf.get("Events") or []]
            rules = ((conf.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
            if rules:
                filter_rules: list[Node | None] = [
                    ("FilterRule", [("Name", str(r["Name"])), ("Value", str(r["Value"]))]) for r in rules
                ]
                children.append(("Filter", [("S3Key", filter_rules)]))
            items.append((element, children))
    return document(("NotificationConfiguration", items))


# --------------------------------------------------------------------------------------------------- parsing


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(body: bytes, root_name: str) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise MalformedXML("XML documents with a DOCTYPE or entities are not accepted.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise MalformedXML(f"The XML you provided was not well-formed: {e}.")
    if _local(root.tag) != root_name:
        raise MalformedXML(f"Expected a <{root_name}> document, got <{_local(root.tag)}>.")
    return root


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return (found[0].text or "") if found else None


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """The keys and the Quiet flag of a DeleteObjects request (at most 1000 keys)."""
    root = _parse(body, "Delete")
    keys: list[str] = []
    for obj in _children(root, "Object"):
        key = _text(obj, "Key")
        if key is None:
            raise MalformedXML("Every <Object> needs a <Key>.")
        keys.append(key)
    if not keys or len(keys) > 1000:
        raise MalformedXML(f"A DeleteObjects request names 1 to 1000 objects, this one names {len(keys)}.")
    quiet = (_text(root, "Quiet") or "").strip().lower() == "true"
    return keys, quiet


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """``(part number, etag)`` of a CompleteMultipartUpload request, in request order."""
    root = _parse(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for part in _children(root, "Part"):
        number, etag = _text(part, "PartNumber"), _text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise MalformedXML("Every <Part> needs a numeric <PartNumber> and an <ETag>.")
        parts.append((int(number), etag.strip()))
    return parts


def parse_location(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucketConfiguration (None when the body is empty)."""
    if not body.strip():
        return None
    root = _parse(body, "CreateBucketConfiguration")
    return (_text(root, "LocationConstraint") or "").strip() or None


def parse_notification(body: bytes) -> dict[str, Any]:
    """A NotificationConfiguration request body in botocore's dict shape."""
    root = _parse(body, "NotificationConfiguration")
    config: dict[str, Any] = {}
    for list_name, (element, arn_field, arn_element) in _NOTIFICATION_XML.items():
        confs = []
        for node in _children(root, element):
            conf: dict[str, Any] = {arn_field: (_text(node, arn_element) or "").strip()}
            conf_id = _text(node, "Id")
            if conf_id:
                conf["Id"] = conf_id
            conf["Events"] = [(e.text or "").strip() for e in _children(node, "Event")]
            rules = [
                {"Name": (_text(r, "Name") or "").strip(), "Value": _text(r, "Value") or ""}
                for f in _children(node, "Filter")
                for k in _children(f, "S3Key")
                for r in _children(k, "FilterRule")
            ]
            if rules:
                conf["Filter"] = {"Key": {"FilterRules": rules}}
            confs.append(conf)
        if confs:
            config[list_name] = confs
    if _children(root, "EventBridgeConfiguration"):
        config["EventBridgeConfiguration"] = {}
    return config
