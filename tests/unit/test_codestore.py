"""Tests of the content-addressed code store: validation of hostile zips, atomic read-only extraction, GC."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from squall.core.errors import InvalidParameterValue, RequestTooLarge, ResourceNotFound
from squall.functions.store import code as code_mod
from squall.functions.store.code import MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES, UNZIP_FAILED, CodeStore, code_sha256


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def info(name: str, mode: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = mode << 16
    return zi


def symlink(name: str) -> zipfile.ZipInfo:
    return info(name, stat.S_IFLNK | 0o777)


def patch_single_entry(data: bytes, *, file_size: int | None = None, flag_bits: int | None = None) -> bytes:
    """Rewrite fields of the (only) entry in both its local header and its central directory record."""
    raw = bytearray(data)
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    if file_size is not None:
        struct.pack_into("<I", raw, local + 22, file_size)
        struct.pack_into("<I", raw, central + 24, file_size)
    if flag_bits is not None:
        struct.pack_into("<H", raw, local + 6, flag_bits)
        struct.pack_into("<H", raw, central + 8, flag_bits)
    return bytes(raw)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "passwd").write_text("root:x:0:0\n")
    return d


@pytest.fixture
def store(tmp_path: Path) -> CodeStore:
    # nested so that '../../x' from an extraction directory would land in tmp_path/outside-ish places
    return CodeStore(tmp_path / "data" / "code-store", durable=False)


def assert_refused(store: CodeStore, tmp_path: Path, data: bytes, match: str) -> InvalidParameterValue:
    before = snapshot(tmp_path)
    with pytest.raises(InvalidParameterValue, match=match) as exc_info:
        store.put_zip(data)
    assert snapshot(tmp_path) == before, "a refused zip must not write anything anywhere"
    assert list((store.root / "code").iterdir()) == []
    assert list((store.root / "zips").iterdir()) == []
    return exc_info.value


# -- the happy path --


def test_put_extracts_read_only_tree(store: CodeStore) -> None:
    data = make_zip(
        [
            ("app.py", b"def handler(e, c):\n    return 1\n"),
            ("pkg/", b""),
            ("pkg/__init__.py", b""),
            (info("bin/tool", stat.S_IFREG | 0o755), b"#!/bin/sh\necho hi\n"),
            (symlink("pkg/alias.py"), b"../app.py"),
        ]
    )
    art = store.put_zip(data)
    assert art.sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode() == code_sha256(data)
    assert art.hex_digest == hashlib.sha256(data).hexdigest()
    assert art.size == len(data)
    assert art.unpacked_size == len(b"def handler(e, c):\n    return 1\n") + len(b"#!/bin/sh\necho hi\n") + len(
        b"../app.py"
    )
    assert art.path == store.root / "code" / art.hex_digest
    assert (art.path / "app.py").read_text().startswith("def handler")
    assert (art.path / "pkg" / "alias.py").is_symlink()
    assert (art.path / "pkg" / "alias.py").read_text() == (art.path / "app.py").read_text()
    assert stat.S_IMODE((art.path / "app.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((art.path / "bin" / "tool").stat().st_mode) == 0o555
    assert stat.S_IMODE((art.path / "pkg").stat().st_mode) == 0o555
    assert stat.S_IMODE(art.path.stat().st_mode) == 0o555
    if os.geteuid() == 0:
        assert all(p.lstat().st_uid == 0 and p.lstat().st_gid == 0 for p in [art.path, *art.path.rglob("*")])
    assert store.get(art.hex_digest) == art.path
    assert store.get_zip(art.hex_digest) == data
    assert store.digests() == {art.hex_digest}


def test_same_zip_is_extracted_once(store: CodeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip([("app.py", b"x = 1\n")])
    first = store.put_zip(data)
    inode = first.path.stat().st_ino

    def no_second_extraction(*args: object) -> int:
        raise AssertionError("extracted twice")

    monkeypatch.setattr(CodeStore, "_extract", no_second_extraction)
    second = store.put_zip(data)
    assert second == first
    assert second.path.stat().st_ino == inode
    # a fresh store on the same root sees it too
    assert CodeStore(store.root, durable=False).put_zip(data) == first


def test_different_zips_get_different_directories(store: CodeStore) -> None:
    a = store.put_zip(make_zip([("app.py", b"a = 1\n")]))
    b = store.put_zip(make_zip([("app.py", b"b = 2\n")]))
    assert a.path != b.path
    assert (a.path / "app.py").read_text() == "a = 1\n"
    assert (b.path / "app.py").read_text() == "b = 2\n"


def test_dot_components_and_root_entry_are_harmless(store: CodeStore) -> None:
    art = store.put_zip(make_zip([("./", b""), ("./app.py", b"x = 1\n"), ("lib//mod.py", b"y = 2\n")]))
    assert (art.path / "app.py").is_file()
    assert (art.path / "lib" / "mod.py").is_file()


def test_stored_bzip2_and_lzma_entries(store: CodeStore) -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        art = store.put_zip(make_zip([("app.py", f"m = {method}\n".encode())], method))
        assert (art.path / "app.py").read_text() == f"m = {method}\n"


# -- refusals --


def test_not_a_zip(store: CodeStore, tmp_path: Path) -> None:
    for junk in (b"", b"hello, this is not a zip", b"PK\x03\x04" + b"\xff" * 100):
        err = assert_refused(store, tmp_path, junk, "Could not unzip")
        assert err.message == UNZIP_FAILED
        assert err.code == "InvalidParameterValueException"


def test_truncated_zip(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("app.py", b"x = 1\n" * 1000)])
    assert_refused(store, tmp_path, data[: len(data) // 2], "Could not unzip")


def test_corrupt_data(store: CodeStore, tmp_path: Path) -> None:
    data = bytearray(make_zip([("app.py", os.urandom(4000))], zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # inside the stored file data: CRC mismatch
    assert_refused(store, tmp_path, bytes(data), "Could not unzip")


def test_empty_zip(store: CodeStore, tmp_path: Path) -> None:
    assert_refused(store, tmp_path, make_zip([]), "zip file is empty")
    assert_refused(store, tmp_path, make_zip([("only/", b""), ("dirs/", b"")]), "zip file is empty")


def test_too_large_zip(store: CodeStore, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(RequestTooLarge, match=f"smaller than {MAX_ZIP_BYTES} bytes") as exc_info:
        store.put_zip(b"\0" * (MAX_ZIP_BYTES + 1))
    assert exc_info.value.status == 413
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../../etc/x", r"'\.\.' path component"),
        ("a/../../x", r"'\.\.' path component"),
        ("..", r"'\.\.' path component"),
        ("/etc/x", "absolute path"),
        ("//etc/x", "absolute path"),
        ("..\\..\\etc\\x", "backslash"),
        ("a\\b.py", "backslash"),
        ("C:/Windows/x", "drive letter"),
        ("c:x", "drive letter"),
        ("a/" + "n" * 300, "longer than 255 bytes"),
    ],
)
def test_hostile_names(store: CodeStore, tmp_path: Path, outside: Path, name: str, match: str) -> None:
    before_outside = snapshot(outside)
    assert_refused(store, tmp_path, make_zip([("app.py", b"x = 1\n"), (name, b"pwned\n")]), match)
    assert snapshot(outside) == before_outside
    assert not (tmp_path / "etc").exists()
    assert not Path("/etc/x").exists()


def test_nul_in_name(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("app.pyX", b"x = 1\n")])
    data = data.replace(b"app.pyX", b"app.py\0")
    assert_refused(store, tmp_path, data, "NUL byte")


@pytest.mark.parametrize(
    ("link", "target", "match"),
    [
        ("evil", "../../outside/etc/passwd", "outside the package"),
        ("evil", "/etc/passwd", "absolute path"),
        ("sub/evil", "../..", "outside the package"),
        ("evil", "sub/../..", "may only appear at the start"),
        ("evil", "", "not a valid link target"),
        ("evil", "C:/x", "absolute path"),
    ],
)
def test_symlinks_pointing_outside(store: CodeStore, tmp_path: Path, link: str, target: str, match: str) -> None:
    data = make_zip([("app.py", b"x = 1\n"), ("sub/a.py", b""), (symlink(link), target.encode())])
    assert_refused(store, tmp_path, data, match)


def test_symlink_climbing_through_another_symlink(store: CodeStore, tmp_path: Path) -> None:
    # "up" -> "." is inside; "up/.." lexically is "." but really is the parent of the package
    data = make_zip([("app.py", b""), (symlink("up"), b"."), (symlink("esc"), b"up/..")])
    assert_refused(store, tmp_path, data, "may only appear at the start")


def test_entry_under_a_symlink(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("sub/a.py", b""), (symlink("d"), b"sub"), ("d/x.py", b"written through the link")])
    assert_refused(store, tmp_path, data, "which the zip also has as a symlink")


def test_entry_under_a_file(store: CodeStore, tmp_path: Path) -> None:
    assert_refused(store, tmp_path, make_zip([("a", b"file"), ("a/b.py", b"")]), "also has as a file")


def test_special_files(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("app.py", b""), (info("fifo", stat.S_IFIFO | 0o644), b"")])
    assert_refused(store, tmp_path, data, "special file")


@pytest.mark.parametrize(
    "names",
    [["app.py", "app.py"], ["lib/a.py", "lib/./a.py"], ["lib/a.py", "lib//a.py"], ["x", "x/"]],
)
def test_duplicate_names(store: CodeStore, tmp_path: Path, names: list[str]) -> None:
    data = make_zip([(n, b"one" if i == 0 else b"") for i, n in enumerate(names)])
    assert_refused(store, tmp_path, data, "more than one entry named")


def test_duplicate_directory_entries_are_fine(store: CodeStore) -> None:
    art = store.put_zip(make_zip([("lib/", b""), ("lib/", b""), ("lib/a.py", b"")]))
    assert (art.path / "lib" / "a.py").is_file()


def test_encrypted_entry(store: CodeStore, tmp_path: Path) -> None:
    data = patch_single_entry(make_zip([("app.py", b"secret")], zipfile.ZIP_STORED), flag_bits=0x1)
    assert_refused(store, tmp_path, data, "is encrypted")


def test_unsupported_compression(store: CodeStore, tmp_path: Path) -> None:
    raw = bytearray(make_zip([("app.py", b"x")], zipfile.ZIP_STORED))
    struct.pack_into("<H", raw, raw.index(b"PK\x03\x04") + 8, 99)
    struct.pack_into("<H", raw, raw.index(b"PK\x01\x02") + 10, 99)
    assert_refused(store, tmp_path, bytes(raw), "unsupported compression method 99")


def test_too_many_entries(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([(f"f{i}", b"") for i in range(code_mod.MAX_ENTRIES + 1)], zipfile.ZIP_STORED)
    assert_refused(store, tmp_path, data, "20001 entries; a package may hold at most 20000")


def test_declared_unzipped_size_over_limit(store: CodeStore, tmp_path: Path) -> None:
    # two honest-looking entries whose declared sizes add up past 250 MB: refused before extracting anything
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.py", b"x")
    data = patch_single_entry(buf.getvalue(), file_size=MAX_UNZIPPED_BYTES + 1)
    err = assert_refused(store, tmp_path, data, "Unzipped size must be smaller than 262144000 bytes")
    assert err.message.startswith("Unzipped size must be smaller than 262144000 bytes")


def test_bomb_with_lying_declared_size(store: CodeStore, tmp_path: Path) -> None:
    # 32 MB of zeros, declared as 100 bytes: extraction must not trust the declared size
    data = patch_single_entry(make_zip([("bomb.bin", b"\0" * (32 << 20))]), file_size=100)
    assert len(data) < 64 * 1024
    assert_refused(store, tmp_path, data, "Could not unzip")


def test_bomb_over_compression_ratio(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("app.py", b"x = 1\n"), ("zeros.bin", b"\0" * (40 << 20))], zipfile.ZIP_DEFLATED)
    assert_refused(store, tmp_path, data, "expands to more than 1000 times its own size")


def test_bzip2_bomb(store: CodeStore, tmp_path: Path) -> None:
    data = make_zip([("zeros.bin", b"\0" * (64 << 20))], zipfile.ZIP_BZIP2)
    assert len(data) < 1024  # bzip2 reaches ratios far beyond deflate's
    assert_refused(store, tmp_path, data, "expands to more than 1000 times")


def test_running_budget_stops_a_lying_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if the declared sizes passed the checks, the bytes actually written are counted and capped."""
    store = CodeStore(tmp_path / "s", durable=False)
    data = make_zip([("a.bin", b"a" * 5000), ("b.bin", b"b" * 5000)], zipfile.ZIP_STORED)
    real_scan = code_mod._scan

    def lenient_scan(zf: zipfile.ZipFile) -> list[code_mod._Entry]:
        # as if the zip had lied about its sizes: the declared-size check passes
        monkeypatch.setattr(code_mod, "MAX_UNZIPPED_BYTES", 10**9)
        try:
            return real_scan(zf)
        finally:
            monkeypatch.setattr(code_mod, "MAX_UNZIPPED_BYTES", 8000)

    monkeypatch.setattr(code_mod, "_scan", lenient_scan)
    monkeypatch.setattr(code_mod, "MAX_UNZIPPED_BYTES", 8000)
    with pytest.raises(InvalidParameterValue, match="Unzipped size must be smaller than 8000 bytes"):
        store.put_zip(data)
    assert list((store.root / "code").iterdir()) == []
    monkeypatch.undo()

    budget = code_mod._Budget(zip_size=10, max_ratio=1000)
    budget.take(code_mod.RATIO_FLOOR)
    with pytest.raises(InvalidParameterValue, match="1000 times"):
        budget.take(1)


# -- atomicity and garbage collection --


def test_crash_during_extraction_leaves_no_directory(store: CodeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip([("app.py", b"x = 1\n"), ("lib/b.py", b"y = 2\n")])

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(CodeStore, "_seal", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        store.put_zip(data)
    assert list((store.root / "code").iterdir()) == []
    assert store.get(hashlib.sha256(data).hexdigest()) is None
    with pytest.raises(ResourceNotFound):
        store.get_zip(hashlib.sha256(data).hexdigest())
    monkeypatch.undo()
    assert (store.put_zip(data).path / "lib" / "b.py").read_text() == "y = 2\n"


def test_leftovers_of_a_killed_process_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "s"
    CodeStore(root, durable=False)
    half = root / "code" / ".tmp-abc-123"
    (half / "sub").mkdir(parents=True)
    (half / "sub" / "f").write_text("partial")
    os.chmod(half / "sub", 0o555)
    (root / "zips" / ".tmp-abc-456").write_bytes(b"partial")
    CodeStore(root, durable=False)
    assert list((root / "code").iterdir()) == []
    assert list((root / "zips").iterdir()) == []


def test_missing_zip_is_restored_on_put(store: CodeStore) -> None:
    data = make_zip([("app.py", b"x = 1\n")])
    art = store.put_zip(data)
    (store.root / "zips" / f"{art.hex_digest}.zip").unlink()  # as if we crashed between tree and zip
    assert store.put_zip(data) == art
    assert store.get_zip(art.hex_digest) == data


def test_delete_unreferenced(store: CodeStore) -> None:
    keep = store.put_zip(make_zip([("app.py", b"keep\n")]))
    drop = store.put_zip(make_zip([("app.py", b"drop\n"), ("lib/x.py", b"")]))
    assert store.delete_unreferenced({keep.hex_digest}) == {drop.hex_digest}
    assert store.get(drop.hex_digest) is None
    assert not drop.path.exists()
    with pytest.raises(ResourceNotFound):
        store.get_zip(drop.hex_digest)
    assert store.get(keep.hex_digest) == keep.path
    assert store.digests() == {keep.hex_digest}
    assert store.delete_unreferenced({keep.hex_digest}) == set()
    assert store.delete_unreferenced(set()) == {keep.hex_digest}
    assert list((store.root / "code").iterdir()) == []


def test_get_rejects_non_digests(store: CodeStore) -> None:
    assert store.get("../../etc") is None
    assert store.get("0" * 64) is None
    assert store.get("A" * 64) is None
    with pytest.raises(ResourceNotFound, match="No code package"):
        store.get_zip("../zips/x")


def test_durable_store_round_trip(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "durable")  # fsyncs the zip and syncs the tree before the rename
    data = make_zip([("app.py", b"x = 1\n")])
    art = store.put_zip(data)
    assert (art.path / "app.py").read_text() == "x = 1\n"
    assert store.get_zip(art.hex_digest) == data
