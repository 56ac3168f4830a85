"""The /tmp filesystems the node makes for instance slots (node/ephemeral.py), on the real kernel."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from squall.sandbox.node import ephemeral


@pytest.fixture
def data_dir() -> Iterator[Path]:
    if not ephemeral.available():
        pytest.skip("needs root and loop devices")
    d = Path(tempfile.mkdtemp(prefix="squall-tmp-test-", dir="/var/tmp"))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def test_slot_filesystem_is_sized_private_and_reused(data_dir: Path) -> None:
    store = ephemeral.EphemeralStorage(data_dir, 16)
    try:
        a = store.instance_mount(1)
        b = store.instance_mount(1)  # the same filesystem again (the slot's next instance)
        c = store.instance_mount(2)
        try:
            ra, rb, rc = (f"/proc/self/fd/{fd}" for fd in (a, b, c))
            st = os.statvfs(ra)
            assert 16 << 20 <= st.f_bavail * st.f_frsize < 17 << 20
            assert os.stat(ra).st_mode & 0o7777 == 0o1777
            assert os.listdir(ra) == []  # no lost+found
            with open(f"{ra}/x", "w") as f:
                f.write("x")
            assert os.listdir(rb) == ["x"] and os.listdir(rc) == []
        finally:
            for fd in (a, b, c):
                os.close(fd)
        assert list((data_dir / "tmp").glob("*.img")) == []  # images are unlinked once attached
    finally:
        store.close()
    with pytest.raises(OSError):
        store.instance_mount(1)


def test_many_slots_at_once(data_dir: Path) -> None:
    """A burst creates many slots' filesystems in parallel: threads racing for the kernel's free loop device must
    all end up with one."""
    store = ephemeral.EphemeralStorage(data_dir, 8)
    try:
        os.close(store.instance_mount(0))  # the template, once
        with ThreadPoolExecutor(32) as pool:
            fds = list(pool.map(store.instance_mount, range(1, 97)))
        assert len({os.stat(f"/proc/self/fd/{fd}").st_dev for fd in fds}) == 96
        for fd in fds:
            os.close(fd)
    finally:
        store.close()
