"""Data at rest against a real ``squall up``: owner-only modes (an existing loose directory fixed at start),
environment variables absent from the database files, and a real full disk (a small tmpfs as the data directory):
writes fail with a clear AWS error, reads and deletes keep working, the server restarts, nothing is corrupted."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._platform import SquallProcess, create

SECRET = "s3cr3t-env-value-for-at-rest-test"
ENV_CODE = """
import os
def handler(event, context):
    return os.environ.get("DB_PASSWORD")
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def loose_modes(data: Path) -> list[str]:
    """Everything under ``data`` readable by group/others, outside the code trees sandboxes read."""
    bad = []
    for root, dirs, files in os.walk(data):
        rel = Path(root).relative_to(data).parts
        if (rel[:2] == ("code", "code") and len(rel) > 2) or (
            rel[:1] in (("staged",), ("runtime",), ("opt",)) and len(rel) > 1
        ):
            dirs[:] = []
            continue
        for name in [*dirs, *files]:
            if not rel and name in ("runtime", "opt"):
                continue  # public code for the sandboxes: /var/runtime (boto3 & co.) and merged layers (/opt)
            if (*rel, name)[:2] == ("code", "code") and len(rel) >= 2:
                continue  # an extracted package: read-only for everyone, read by sandboxes at /var/task
            if rel[:1] in (("runtime",), ("opt",)) and len(rel) >= 1:
                continue  # /var/runtime (hard links of the server's boto3) and merged layers (/opt), public code
            p = Path(root) / name
            if not p.is_symlink() and mode(p) & 0o077:
                bad.append(f"{p.relative_to(data)} {oct(mode(p))}")
    return bad


@pytest.fixture(scope="module")
def loose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    data = tmp_path_factory.mktemp("at-rest") / "data"
    data.mkdir()
    (data / "leftover.log").write_text("from an older Squall")
    os.chmod(data, 0o755)
    os.chmod(data / "leftover.log", 0o644)
    proc = SquallProcess(data).start()
    yield proc
    assert proc.stop() == 0


def test_the_data_directory_is_owner_only(loose: SquallProcess) -> None:
    lam = loose.client("lambda")
    create(lam, "envfn", ENV_CODE, Environment={"Variables": {"DB_PASSWORD": SECRET}})
    s3 = loose.client("s3")
    s3.create_bucket(Bucket="rest")
    s3.put_object(Bucket="rest", Key="big", Body=b"b" * 300_000)
    sqs = loose.client("sqs")
    sqs.create_queue(QueueName="rest")
    data = loose.data_dir
    assert mode(data) == 0o700
    assert loose_modes(data) == []
    assert mode(data / "leftover.log") == 0o600


def test_environment_variables_are_not_in_the_database_but_reach_the_function(loose: SquallProcess) -> None:
    lam = loose.client("lambda")
    assert lam.get_function_configuration(FunctionName="envfn")["Environment"]["Variables"] == {"DB_PASSWORD": SECRET}
    r = lam.invoke(FunctionName="envfn", Payload=b"{}")
    assert json.loads(r["Payload"].read()) == SECRET
    on_disk = b"".join(p.read_bytes() for p in loose.data_dir.rglob("*.db*") if p.is_file())
    assert SECRET.encode() not in on_disk
    key = loose.data_dir / "keys" / "env.key"
    assert mode(key) == 0o600 and mode(key.parent) == 0o700


# ------------------------------------------------------------------------------------------------ full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    # (the runtime site-packages functions see, ~37 MB, is copied in at start: hard links cannot cross filesystems)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    """Take every free byte of the filesystem (as another program would), 1 MiB then 4 KiB at a time."""
    path.mkdir(exist_ok=True)
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    f.write(chunk)
    return filler


def s3_error(e: ClientError) -> tuple[str, int, str]:
    r: dict[str, Any] = e.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def test_a_full_disk(small_disk: Path) -> None:
    proc = SquallProcess(small_disk, SQUALL_DISK_RESERVE_MB="4").start()
    try:
        s3 = proc.client("s3")
        lam = proc.client("lambda")
        s3.create_bucket(Bucket="full")
        s3.put_object(Bucket="full", Key="small", Body=b"small object")
        s3.put_object(Bucket="full", Key="big", Body=b"B" * 2_000_000)
        s3.put_object(Bucket="full", Key="doomed", Body=b"D" * 500_000)
        create(lam, "before", "def handler(e, c):\n    return 'ok'\n")
        assert (small_disk / ".reserve").stat().st_size == 4 << 20
        fill(small_disk)

        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket="full", Key="new", Body=b"N" * 1_000_000)
        code, status, message = s3_error(ei.value)
        assert (code, status) == ("ServiceUnavailable", 503) and "disk is full" in message
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket="full", Key="tiny", Body=b"t")  # inline in the database: refused too
        assert s3_error(ei.value)[:2] == ("ServiceUnavailable", 503)
        with pytest.raises(ClientError) as ei:
            create(lam, "after", "def handler(e, c):\n    return 1\n")
        assert ei.value.response["Error"]["Code"] == "ServiceException"
        assert "disk is full" in ei.value.response["Error"]["Message"]

        assert s3.get_object(Bucket="full", Key="big")["Body"].read() == b"B" * 2_000_000
        s3.delete_object(Bucket="full", Key="doomed")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]] == ["big", "small"]
        assert lam.invoke(FunctionName="before", Payload=b"{}")["Payload"].read() == b'"ok"'

        assert proc.stop() == 0
        proc = SquallProcess(small_disk, port=proc.port, SQUALL_DISK_RESERVE_MB="4").start()  # starts on a full disk
        s3 = proc.client("s3")
        assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"small object"
        fill(small_disk / "more")  # what the server's own files freed at shutdown, taken again
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket="full", Key="new", Body=b"N" * 1_000_000)
        assert s3_error(ei.value)[:2] == ("ServiceUnavailable", 503)
        s3.delete_object(Bucket="full", Key="small")

        for f in (small_disk / "filler", small_disk / "more" / "filler"):
            f.unlink()  # space comes back: writes work again, the reserve is re-created
        s3.put_object(Bucket="full", Key="new", Body=b"N" * 1_000_000)
        assert s3.get_object(Bucket="full", Key="new")["Body"].read() == b"N" * 1_000_000
        assert (small_disk / ".reserve").exists()
        assert proc.stop() == 0
        for db in ("squall.db", "objects/objects.db", "queues.db"):
            with sqlite3.connect(small_disk / db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), db
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()
