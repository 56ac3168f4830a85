"""Access keys, kept in ``<data dir>/credentials.json`` (mode 0600, replaced atomically).

The admin key is created on first start, unless ``SQUALL_ACCESS_KEY_ID`` and ``SQUALL_SECRET_ACCESS_KEY`` are
both set, in which case they are the admin key (and the admin key in the file, if any, is not accepted).
Functions get scoped keys (``KeyRing.issue_scoped(name)``) that live in the same file, so they survive restarts.

File layout::

    {"version": 1,
     "admin": {"access_key_id": "AKSQ...", "secret_access_key": "..."},
     "scoped": {"<name>": {"access_key_id": "AKSQ...", "secret_access_key": "..."}}}
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from squall.core.errors import SquallError

__all__ = [
    "ACCESS_KEY_ENV",
    "CREDENTIALS_FILE",
    "SECRET_KEY_ENV",
    "Credentials",
    "CredentialsError",
    "KeyRing",
    "load_or_create",
    "new_access_key_id",
    "new_secret_access_key",
]

ACCESS_KEY_ENV = "SQUALL_ACCESS_KEY_ID"
SECRET_KEY_ENV = "SQUALL_SECRET_ACCESS_KEY"
CREDENTIALS_FILE = "credentials.json"
_FILE_VERSION = 1
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
# What may appear in an access key id: it is embedded in 'Credential=<id>/<date>/...' and in presigned URLs.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{3,128}")

Source = Literal["env", "file", "new"]


class CredentialsError(SquallError):
    """The access keys could not be loaded or saved; the message says what to fix."""

    code = "ServiceException"
    status = 500
    fault = "user"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    created: bool = False
    source: Source = "file"


def new_access_key_id() -> str:
    """'AKSQ' followed by 16 random upper-case letters and digits, shaped like an AWS access key id."""
    return "AKSQ" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    """40 random letters and digits (about 238 bits)."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def _new_credentials() -> Credentials:
    return Credentials(new_access_key_id(), new_secret_access_key(), created=True, source="new")


# --------------------------------------------------------------------------------------------------- env


def _validate_pair(key_id: str, secret: str, where: str) -> None:
    if not _KEY_ID_RE.fullmatch(key_id):
        raise CredentialsError(
            f"{where}: the access key id {key_id!r} is not valid. Use 3-128 characters from A-Z, a-z, 0-9, "
            "'_', '.' and '-' (for example AKSQ followed by 16 letters and digits)."
        )
    if not secret or any(c.isspace() for c in secret):
        raise CredentialsError(f"{where}: the secret access key must be non-empty and contain no whitespace.")


def _from_env(env: Mapping[str, str]) -> Credentials | None:
    key_id = env.get(ACCESS_KEY_ENV, "").strip()
    secret = env.get(SECRET_KEY_ENV, "").strip()
    if not key_id and not secret:
        return None
    if not key_id or not secret:
        present, missing = (ACCESS_KEY_ENV, SECRET_KEY_ENV) if key_id else (SECRET_KEY_ENV, ACCESS_KEY_ENV)
        raise CredentialsError(
            f"{present} is set but {missing} is not: set both to choose the admin key, or unset both to use "
            f"the key stored in <data dir>/{CREDENTIALS_FILE}."
        )
    _validate_pair(key_id, secret, f"{ACCESS_KEY_ENV}/{SECRET_KEY_ENV}")
    return Credentials(key_id, secret, created=False, source="env")


# --------------------------------------------------------------------------------------------------- file


def _read_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"Cannot read {path}: {exc.strerror}. Check its owner and permissions.")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
        raise CredentialsError(
            f"{path} is not a Squall credentials file (version {_FILE_VERSION}). Restore it from a backup, or "
            "delete it to generate new keys (clients and functions using the old keys will then be refused)."
        )
    return data


def _pair(entry: Any, path: Path, what: str) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{path}: {what} is missing or not an object; restore the file or delete it.")
    key_id, secret = entry.get("access_key_id"), entry.get("secret_access_key")
    if not isinstance(key_id, str) or not isinstance(secret, str):
        raise CredentialsError(
            f"{path}: {what} needs string 'access_key_id' and 'secret_access_key'; restore the file or delete it."
        )
    _validate_pair(key_id, secret, f"{path} ({what})")
    return key_id, secret


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to a 0600 temp file next to ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CredentialsError(
            f"Cannot write {path}: {exc.strerror}. Make sure the data directory is writable by this user."
        )
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _entry(creds: Credentials) -> dict[str, str]:
    return {"access_key_id": creds.access_key_id, "secret_access_key": creds.secret_access_key}


def _empty_file() -> dict[str, Any]:
    return {"version": _FILE_VERSION, "admin": None, "scoped": {}}


# --------------------------------------------------------------------------------------------------- API


def load_or_create(data_dir: Path, env: Mapping[str, str]) -> Credentials:
    """The admin key: from the environment, else from ``<data_dir>/credentials.json``, else newly created and
    saved there (``created=True``; print it once so the operator can configure clients)."""
    from_env = _from_env(env)
    if from_env is not None:
        return from_env
    path = Path(data_dir) / CREDENTIALS_FILE
    data = _read_file(path)
    if data is not None and data.get("admin") is not None:
        key_id, secret = _pair(data["admin"], path, "'admin'")
        return Credentials(key_id, secret, created=False, source="file")
    creds = _new_credentials()
    data = data if data is not None else _empty_file()
    data["admin"] = _entry(creds)
    _write_atomically(path, data)
    return creds


class KeyRing:
    """Every access key Squall accepts: the admin key plus the scoped keys issued to functions.

    Thread-safe.  Scoped keys are written to the credentials file as soon as they are issued.
    """

    def __init__(self, data_dir: Path, admin: Credentials) -> None:
        self._path = Path(data_dir) / CREDENTIALS_FILE
        self._admin = admin
        self._lock = threading.Lock()
        self._scoped: dict[str, Credentials] = {}
        data = _read_file(self._path)
        scoped = (data or {}).get("scoped") or {}
        if not isinstance(scoped, dict):
            raise CredentialsError(f"{self._path}: 'scoped' must be an object; restore the file or delete it.")
        for name, entry in scoped.items():
            key_id, secret = _pair(entry, self._path, f"scoped key {name!r}")
            self._scoped[name] = Credentials(key_id, secret, created=False, source="file")
        self._by_id = self._index()

    @classmethod
    def open(cls, data_dir: Path, env: Mapping[str, str]) -> KeyRing:
        """``load_or_create`` the admin key, then load the scoped keys."""
        return cls(data_dir, load_or_create(data_dir, env))

    @property
    def admin(self) -> Credentials:
        return self._admin

    def _index(self) -> dict[str, tuple[str | None, Credentials]]:
        index: dict[str, tuple[str | None, Credentials]] = {
            c.access_key_id: (name, c) for name, c in self._scoped.items()
        }
        index[self._admin.access_key_id] = (None, self._admin)
        return index

    def secret_for(self, access_key_id: str) -> str | None:
        """The secret of a known key, or None (the ``lookup_secret`` of ``sigv4.verify_request``)."""
        found = self._by_id.get(access_key_id)
        return found[1].secret_access_key if found else None

    def is_admin(self, access_key_id: str) -> bool:
        return access_key_id == self._admin.access_key_id

    def scope_of(self, access_key_id: str) -> str | None:
        """The name a scoped key was issued for, or None for the admin key and unknown keys."""
        found = self._by_id.get(access_key_id)
        return found[0] if found else None

    def scoped_names(self) -> list[str]:
        with self._lock:
            return sorted(self._scoped)

    def issue_scoped(self, name: str) -> Credentials:
        """The key for ``name`` (e.g. a function name), created and saved on first use; the same key after."""
        if not name or len(name) > 256:
            raise CredentialsError(f"A scoped key needs a name of 1-256 characters, got {name!r}.")
        with self._lock:
            existing = self._scoped.get(name)
            if existing is not None:
                return existing
            creds = _new_credentials()
            self._save({**self._scoped, name: creds})
            self._scoped[name] = replace(creds, created=False, source="file")
            self._by_id = self._index()
            return creds

    def revoke_scoped(self, name: str) -> bool:
        """Forget the key issued for ``name``; True if there was one."""
        with self._lock:
            if name not in self._scoped:
                return False
            remaining = {k: v for k, v in self._scoped.items() if k != name}
            self._save(remaining)
            self._scoped = remaining
            self._by_id = self._index()
            return True

    def _save(self, scoped: Mapping[str, Credentials]) -> None:
        data = _read_file(self._path) or _empty_file()
        data["scoped"] = {name: _entry(c) for name, c in sorted(scoped.items())}
        _write_atomically(self._path, data)
