"""Function environment variables encrypted at rest, as Lambda does with KMS.

The metadata database never holds a function's ``Environment.Variables`` in the clear: the store seals them with
AES-256-GCM (``cryptography``) under a key kept apart from the database, so a copy of ``squall.db`` (a backup, a
leaked file) alone reveals nothing.  The key is, in order of precedence:

* ``SQUALL_ENV_KEY``: the base64 of 32 bytes (from a secret manager; never written anywhere by Squall);
* ``SQUALL_ENV_KEY_FILE``: a file holding that base64 line (created 0600 if absent, its directory 0700);
* ``<data dir>/keys/env.key``: the same, created on first start.

A sealed value is ``"squall-env-v1:" + base64(nonce || ciphertext || tag)``; the function's name is the
associated data, so a sealed value copied into another function's row does not decrypt.  The admin still reads the
variables back through GetFunctionConfiguration: the server decrypts on read.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from squall.core.errors import ServiceError

__all__ = [
    "ENV_KEY_ENV",
    "ENV_KEY_FILE_ENV",
    "SEALED_PREFIX",
    "EnvCipher",
    "EnvKeyError",
    "default_key_path",
]

ENV_KEY_ENV = "SQUALL_ENV_KEY"
ENV_KEY_FILE_ENV = "SQUALL_ENV_KEY_FILE"
SEALED_PREFIX = "squall-env-v1:"
_NONCE = 12


class EnvKeyError(ServiceError):
    """The environment key is missing, malformed, or not the one the stored variables were sealed with."""


def default_key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "env.key"


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise EnvKeyError(
            f"{where} must hold the base64 of exactly 32 random bytes (for example the output of "
            "`python -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())'`)."
        )
    return key


def _write_new_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key another process wrote meanwhile
    except FileExistsError:
        os.unlink(tmp)
        return _read_key(path)
    os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return key


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except OSError as e:
        raise EnvKeyError(f"Cannot read the environment key {path}: {e.strerror}.") from None
    except UnicodeDecodeError:
        text = ""
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return _decode_key(text, str(path))


class EnvCipher:
    """Seals and opens ``Environment.Variables`` (a dict of strings) for one function name."""

    def __init__(self, key: bytes, source: str) -> None:
        self._aead = AESGCM(key)
        self.source = source

    @classmethod
    def open(cls, data_dir: Path, env: Mapping[str, str], *, create: bool = True) -> EnvCipher:
        """The key from ``SQUALL_ENV_KEY``, ``SQUALL_ENV_KEY_FILE`` or ``<data dir>/keys/env.key`` (created when
        ``create`` and absent)."""
        if env.get(ENV_KEY_ENV, "").strip():
            return cls(_decode_key(env[ENV_KEY_ENV], ENV_KEY_ENV), ENV_KEY_ENV)
        path = Path(env[ENV_KEY_FILE_ENV]) if env.get(ENV_KEY_FILE_ENV, "").strip() else default_key_path(data_dir)
        if path.exists():
            return cls(_read_key(path), str(path))
        if not create:
            raise EnvKeyError(f"The environment key {path} does not exist.")
        return cls(_write_new_key(path), str(path))

    def seal(self, function: str, variables: Mapping[str, str]) -> str:
        nonce = secrets.token_bytes(_NONCE)
        plain = json.dumps(dict(variables), separators=(",", ":"), sort_keys=True).encode()
        sealed = self._aead.encrypt(nonce, plain, function.encode())
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open_sealed(self, function: str, sealed: str) -> dict[str, str]:
        try:
            raw = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], function.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise EnvKeyError(
                f"The environment variables of function {function} cannot be decrypted with the key from "
                f"{self.source}: it is not the key they were sealed with (restore that key, or set the "
                "variables again with UpdateFunctionConfiguration)."
            ) from None
        value = json.loads(plain)
        return {str(k): str(v) for k, v in value.items()}
