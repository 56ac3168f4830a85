"""Data at rest: owner-only modes, environment variables sealed under a key kept apart from the database."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from squall.functions.store.metadata import SqliteMetadataStore
from squall.s3.store.objects import ObjectStore
from squall.store.disk import DiskFull, DiskGuard, secure_data_dir
from squall.store.env_crypto import EnvCipher, EnvKeyError

SECRET = "hunter2-very-secret-value"
CONFIG = {"Runtime": "python3.11", "Handler": "app.handler", "Environment": {"Variables": {"DB_PASSWORD": SECRET}}}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def raw_bytes(db: Path) -> bytes:
    """The database as someone who copied the files would see it: the main file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def test_secure_data_dir_fixes_an_existing_directory_but_not_the_code_trees(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "objects" / "data" / "ab").mkdir(parents=True)
    (data / "code" / "code" / "f00d").mkdir(parents=True)
    (data / "squall.db").write_bytes(b"x")
    (data / "objects" / "data" / "ab" / "abcd").write_bytes(b"x")
    code_file = data / "code" / "code" / "f00d" / "app.py"
    code_file.write_text("x")
    for p in (data, data / "objects", data / "objects" / "data", data / "code"):
        os.chmod(p, 0o755)
    os.chmod(data / "squall.db", 0o644)
    os.chmod(code_file, 0o444)
    os.chmod(code_file.parent, 0o555)
    assert secure_data_dir(data) > 0
    assert mode(data) == 0o700
    assert mode(data / "objects") == 0o700 and mode(data / "objects" / "data" / "ab") == 0o700
    assert mode(data / "squall.db") == 0o600
    assert mode(data / "objects" / "data" / "ab" / "abcd") == 0o600
    assert mode(code_file) == 0o444 and mode(code_file.parent) == 0o555  # sandboxes read these via /var/task
    assert secure_data_dir(data) == 0


def test_stores_create_their_files_owner_only(tmp_path: Path) -> None:
    with SqliteMetadataStore(tmp_path / "squall.db") as s:
        s.create_function("f", dict(CONFIG), "/code")
        assert mode(tmp_path / "squall.db") == 0o600
        assert mode(Path(f"{tmp_path / 'squall.db'}-wal")) == 0o600
    objects = ObjectStore(tmp_path / "objects")
    try:
        objects.create_bucket("bkt")
        objects.put_object("bkt", "big", b"x" * 200_000)
        files = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
        assert files and all(mode(p) == 0o600 for p in files), {str(p): oct(mode(p)) for p in files}
    finally:
        objects.close()


def test_environment_variables_are_sealed_in_the_database(tmp_path: Path) -> None:
    db = tmp_path / "squall.db"
    cipher = EnvCipher.open(tmp_path, {})
    with SqliteMetadataStore(db, env_cipher=cipher) as s:
        s.create_function("f", dict(CONFIG), "/code")
        s.publish_version("f")
        assert SECRET.encode() not in raw_bytes(db)
        assert s.get_function("f").config["Environment"]["Variables"] == {"DB_PASSWORD": SECRET}
        assert s.get_function("f", "1").config["Environment"]["Variables"] == {"DB_PASSWORD": SECRET}
        s.update_function("f", {**CONFIG, "Environment": {"Variables": {"OTHER": SECRET + "2"}}})
        assert (SECRET + "2").encode() not in raw_bytes(db)
    key_file = tmp_path / "keys" / "env.key"
    assert mode(key_file) == 0o600 and mode(key_file.parent) == 0o700
    # the database alone (no key) reveals nothing, and says why it cannot
    with SqliteMetadataStore(db) as s, pytest.raises(EnvKeyError):
        s.get_function("f")
    other = EnvCipher(os.urandom(32), "test")
    with SqliteMetadataStore(db, env_cipher=other) as s, pytest.raises(EnvKeyError) as ei:
        s.get_function("f")
    assert "not the key they were sealed with" in ei.value.message


def test_plaintext_rows_from_before_are_sealed_at_start(tmp_path: Path) -> None:
    db = tmp_path / "squall.db"
    with SqliteMetadataStore(db) as s:  # a database written before encryption at rest
        s.create_function("f", dict(CONFIG), "/code")
        s.publish_version("f")
    assert SECRET.encode() in raw_bytes(db)
    cipher = EnvCipher.open(tmp_path, {})
    with SqliteMetadataStore(db, env_cipher=cipher) as s:
        assert SECRET.encode() not in raw_bytes(db)
        assert s.get_function("f").config["Environment"]["Variables"] == {"DB_PASSWORD": SECRET}
        assert s.get_function("f", "1").config["Environment"]["Variables"] == {"DB_PASSWORD": SECRET}
        assert s.seal_plaintext_environments() == 0


def test_a_sealed_value_does_not_open_under_another_function_name(tmp_path: Path) -> None:
    cipher = EnvCipher.open(tmp_path, {})
    sealed = cipher.seal("a", {"K": "v"})
    assert cipher.open_sealed("a", sealed) == {"K": "v"}
    with pytest.raises(EnvKeyError):
        cipher.open_sealed("b", sealed)


def test_the_key_can_come_from_the_environment_or_another_path(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    from_env = EnvCipher.open(tmp_path / "d1", {"SQUALL_ENV_KEY": key})
    assert not (tmp_path / "d1" / "keys").exists()
    elsewhere = tmp_path / "vault" / "env.key"
    from_file = EnvCipher.open(tmp_path / "d2", {"SQUALL_ENV_KEY_FILE": str(elsewhere)})
    assert elsewhere.exists() and not (tmp_path / "d2" / "keys").exists()
    assert EnvCipher.open(tmp_path / "d3", {"SQUALL_ENV_KEY_FILE": str(elsewhere)}).open_sealed(
        "f", from_file.seal("f", {"A": "1"})
    ) == {"A": "1"}
    assert from_env.open_sealed("f", EnvCipher.open(tmp_path, {"SQUALL_ENV_KEY": key}).seal("f", {})) == {}
    with pytest.raises(EnvKeyError):
        EnvCipher.open(tmp_path, {"SQUALL_ENV_KEY": "too-short"})


def test_disk_guard_refuses_writes_while_the_reserve_is_released(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, 1024 * 1024)
    guard.start()
    assert (tmp_path / ".reserve").stat().st_size == 1024 * 1024
    guard.check_write(10)
    guard.release()
    assert not (tmp_path / ".reserve").exists()
    assert guard.full
    guard.check_write(10)  # plenty of room on this disk: the reserve comes back
    assert (tmp_path / ".reserve").stat().st_size == 1024 * 1024 and not guard.full
    with pytest.raises(DiskFull) as ei:
        guard.check_write(guard.free_bytes() + 1)
    assert ei.value.code_for("s3") == "ServiceUnavailable" and ei.value.status_for("s3") == 503
    assert "disk is full" in ei.value.message
