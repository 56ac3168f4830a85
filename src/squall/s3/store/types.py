"""The values the object store hands out: object metadata, open object bodies, listings, uploads and parts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO

from squall.s3.errors import InvalidRange

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "Bucket",
    "ByteRange",
    "ListResult",
    "ObjectAttrs",
    "ObjectBody",
    "ObjectMeta",
    "Part",
    "Upload",
    "resolve_range",
]

DEFAULT_CONTENT_TYPE = "binary/octet-stream"

#: An HTTP byte range: ``(first, last)`` for ``bytes=first-last``, ``(first, None)`` for ``bytes=first-`` and
#: ``(None, n)`` for the last n bytes (``bytes=-n``).
ByteRange = tuple[int | None, int | None]

_ATTR_FIELDS = ("cache_control", "content_disposition", "content_encoding", "content_language", "expires")


@dataclass(frozen=True)
class ObjectAttrs:
    """What the client set on an object: Content-Type, the other stored headers and x-amz-meta-* (``metadata``,
    names lower case without the prefix)."""

    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: Mapping[str, str] = field(default_factory=dict)
    cache_control: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    expires: str | None = None

    def to_json(self) -> str:
        doc: dict[str, Any] = {"content_type": self.content_type, "metadata": dict(self.metadata)}
        for name in _ATTR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ObjectAttrs:
        doc = json.loads(text)
        return cls(
            content_type=doc.get("content_type") or DEFAULT_CONTENT_TYPE,
            metadata=dict(doc.get("metadata") or {}),
            **{name: doc.get(name) for name in _ATTR_FIELDS},
        )

    def headers(self) -> dict[str, str]:
        """The response headers these attributes produce (Content-Type, Cache-Control, ..., x-amz-meta-*)."""
        out = {"Content-Type": self.content_type}
        names = {
            "cache_control": "Cache-Control",
            "content_disposition": "Content-Disposition",
            "content_encoding": "Content-Encoding",
            "content_language": "Content-Language",
            "expires": "Expires",
        }
        for attr, header in names.items():
            value = getattr(self, attr)
            if value is not None:
                out[header] = value
        for name, value in self.metadata.items():
            out[f"x-amz-meta-{name}"] = value
        return out


@dataclass(frozen=True)
class ObjectMeta:
    """A stored object without its data.  ``etag`` is quoted (``'"<md5 hex>"'`` or ``'"<hex>-<parts>"'``);
    ``last_modified`` is Unix seconds."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: float
    attrs: ObjectAttrs = ObjectAttrs()
    parts_count: int | None = None


@dataclass(frozen=True)
class Bucket:
    name: str
    created: float
    region: str


@dataclass(frozen=True)
class Upload:
    """An in-progress multipart upload."""

    upload_id: str
    bucket: str
    key: str
    initiated: float
    attrs: ObjectAttrs = ObjectAttrs()


@dataclass(frozen=True)
class Part:
    part_number: int
    etag: str
    size: int
    last_modified: float


@dataclass(frozen=True)
class ListResult:
    """One page of a listing.  ``next_token`` continues a ListObjectsV2 listing; ``next_marker`` (the last key or
    common prefix returned) continues a ListObjects (v1) listing.  ``owner_id`` is set when the owner was asked
    for."""

    contents: list[ObjectMeta]
    common_prefixes: list[str]
    is_truncated: bool
    next_token: str | None = None
    next_marker: str | None = None
    owner_id: str | None = None

    @property
    def key_count(self) -> int:
        return len(self.contents) + len(self.common_prefixes)


def resolve_range(spec: ByteRange, size: int, requested: str = "") -> tuple[int, int]:
    """``(start, length)`` of ``spec`` in an object of ``size`` bytes; ``InvalidRange`` when unsatisfiable."""
    first, last = spec
    text = requested or f"bytes={'' if first is None else first}-{'' if last is None else last}"
    if first is None:
        n = last or 0
        if n <= 0 or size == 0:
            raise InvalidRange(text, size)
        n = min(n, size)
        return size - n, n
    if first >= size or (last is not None and last < first):
        raise InvalidRange(text, size)
    end = size - 1 if last is None else min(last, size - 1)
    return first, end - first + 1


class ObjectBody:
    """An object's data, open for reading: the file stays readable even if the object is overwritten or deleted
    meanwhile (data files are immutable and only unlinked).  Iterate ``chunks()`` to stream it; always close it
    (it is a context manager)."""

    def __init__(self, meta: ObjectMeta, file: BinaryIO) -> None:
        self.meta = meta
        self.file = file
        self.start = 0
        self.length = meta.size
        self.ranged = False

    def select(self, spec: ByteRange | None, requested: str = "") -> ObjectBody:
        """Restrict the body to a byte range (None: the whole object).  Raises ``InvalidRange``."""
        if spec is not None:
            self.start, self.length = resolve_range(spec, self.meta.size, requested)
            self.ranged = True
        return self

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{self.meta.size}"

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The selected bytes, in chunks of at most ``chunk_size``."""
        self.file.seek(self.start)
        left = self.length
        while left > 0:
            data = self.file.read(min(chunk_size, left))
            if not data:
                break
            left -= len(data)
            yield data

    def read_chunk(self, offset: int, chunk_size: int = 1 << 20) -> bytes:
        """Up to ``chunk_size`` bytes of the selection starting ``offset`` bytes into it (for async streaming
        one blocking read at a time)."""
        if offset >= self.length:
            return b""
        self.file.seek(self.start + offset)
        return self.file.read(min(chunk_size, self.length - offset))

    def read(self) -> bytes:
        """The whole selection in memory: for small objects and tests."""
        return b"".join(self.chunks())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ObjectBody:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
