"""The access-key store: environment override, first-start creation, scoped keys that survive restarts."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from squall.aws.credentials import (
    CREDENTIALS_FILE,
    Credentials,
    CredentialsError,
    KeyRing,
    load_or_create,
    new_access_key_id,
    new_secret_access_key,
)

ENV = {"SQUALL_ACCESS_KEY_ID": "AKSQFROMENVIRONMENT1", "SQUALL_SECRET_ACCESS_KEY": "env-secret"}


def test_first_start_creates_file_with_0600(tmp_path: Path) -> None:
    creds = load_or_create(tmp_path, {})
    assert creds.created and creds.source == "new"
    assert re.fullmatch(r"AKSQ[A-Z0-9]{16}", creds.access_key_id)
    assert len(creds.secret_access_key) == 40
    path = tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["admin"] == {
        "access_key_id": creds.access_key_id,
        "secret_access_key": creds.secret_access_key,
    }
    assert [p.name for p in tmp_path.iterdir()] == [CREDENTIALS_FILE]


def test_second_start_reads_the_same_key(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, {})
    second = load_or_create(tmp_path, {})
    assert (second.access_key_id, second.secret_access_key) == (first.access_key_id, first.secret_access_key)
    assert not second.created and second.source == "file"


def test_missing_data_dir_is_created(tmp_path: Path) -> None:
    load_or_create(tmp_path / "a" / "b", {})
    assert (tmp_path / "a" / "b" / CREDENTIALS_FILE).exists()


def test_env_overrides_and_writes_nothing(tmp_path: Path) -> None:
    creds = load_or_create(tmp_path, ENV)
    assert creds == Credentials("AKSQFROMENVIRONMENT1", "env-secret", created=False, source="env")
    assert not (tmp_path / CREDENTIALS_FILE).exists()


@pytest.mark.parametrize("only", ["SQUALL_ACCESS_KEY_ID", "SQUALL_SECRET_ACCESS_KEY"])
def test_env_needs_both(tmp_path: Path, only: str) -> None:
    with pytest.raises(CredentialsError) as info:
        load_or_create(tmp_path, {only: "x" * 20})
    assert only in info.value.message
    assert "set both" in info.value.message


def test_env_key_id_is_validated(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="not valid"):
        load_or_create(tmp_path, {"SQUALL_ACCESS_KEY_ID": "has/slash", "SQUALL_SECRET_ACCESS_KEY": "s"})


def test_corrupt_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / CREDENTIALS_FILE).write_text("{not json")
    with pytest.raises(CredentialsError, match="delete it"):
        load_or_create(tmp_path, {})


def test_secret_is_not_in_repr() -> None:
    assert "topsecret" not in repr(Credentials("AKSQX", "topsecret"))


def test_generated_ids_are_random() -> None:
    assert len({new_access_key_id() for _ in range(50)}) == 50
    assert len({new_secret_access_key() for _ in range(50)}) == 50


def test_keyring_admin_and_scoped_keys_survive_restart(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, {})
    admin = ring.admin
    assert ring.secret_for(admin.access_key_id) == admin.secret_access_key
    assert ring.is_admin(admin.access_key_id)
    fn = ring.issue_scoped("my-function")
    assert fn.created and fn.access_key_id != admin.access_key_id
    assert ring.issue_scoped("my-function").access_key_id == fn.access_key_id
    other = ring.issue_scoped("other")
    assert ring.secret_for(fn.access_key_id) == fn.secret_access_key
    assert ring.scope_of(fn.access_key_id) == "my-function"
    assert ring.scope_of(admin.access_key_id) is None
    assert ring.secret_for("AKSQUNKNOWN") is None

    restarted = KeyRing.open(tmp_path, {})
    assert restarted.admin.access_key_id == admin.access_key_id
    assert restarted.secret_for(fn.access_key_id) == fn.secret_access_key
    assert restarted.secret_for(other.access_key_id) == other.secret_access_key
    again = restarted.issue_scoped("my-function")
    assert (again.access_key_id, again.created, again.source) == (fn.access_key_id, False, "file")
    assert restarted.scoped_names() == ["my-function", "other"]
    assert stat.S_IMODE((tmp_path / CREDENTIALS_FILE).stat().st_mode) == 0o600


def test_keyring_revoke(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, {})
    fn = ring.issue_scoped("f")
    assert ring.revoke_scoped("f")
    assert not ring.revoke_scoped("f")
    assert ring.secret_for(fn.access_key_id) is None
    assert KeyRing.open(tmp_path, {}).secret_for(fn.access_key_id) is None


def test_keyring_with_env_admin_keeps_scoped_keys_in_file(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, ENV)
    fn = ring.issue_scoped("f")
    data = json.loads((tmp_path / CREDENTIALS_FILE).read_text())
    assert data["admin"] is None
    assert data["scoped"]["f"]["access_key_id"] == fn.access_key_id
    restarted = KeyRing.open(tmp_path, ENV)
    assert restarted.secret_for("AKSQFROMENVIRONMENT1") == "env-secret"
    assert restarted.secret_for(fn.access_key_id) == fn.secret_access_key


def test_env_admin_replaces_file_admin(tmp_path: Path) -> None:
    file_admin = load_or_create(tmp_path, {})
    ring = KeyRing.open(tmp_path, ENV)
    assert ring.secret_for(file_admin.access_key_id) is None
    assert ring.admin.source == "env"


def test_scoped_name_is_validated(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, {})
    with pytest.raises(CredentialsError):
        ring.issue_scoped("")
