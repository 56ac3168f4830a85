"""A minimal keep-alive HTTP/1.1 load client with SigV4 signing, so the client costs the same against Squall and
against the in-process ceiling (both get signed requests; the ceiling ignores the signature)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

from squall.aws.sigv4 import canonical_request, signing_key, string_to_sign


class Signer:
    def __init__(self, key_id: str, secret: str, region: str = "us-east-1", service: str = "lambda") -> None:
        self.key_id, self.secret, self.region, self.service = key_id, secret, region, service
        self._keys: dict[str, bytes] = {}

    def headers(
        self, method: str, host: str, path: str, body: bytes, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        key = self._keys.get(date)
        if key is None:
            key = self._keys[date] = signing_key(self.secret, date, self.region, self.service)
        payload_hash = hashlib.sha256(body).hexdigest()
        h = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash, **(extra or {})}
        signed = sorted(h)
        creq = canonical_request(method, path, "", h, signed, payload_hash, self.service)
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        sig = hmac.new(key, string_to_sign(amz_date, scope, creq).encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
        )
        return h


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            return status, data
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
