"""Tests of package building: file selection, vendored requirements (offline, from a local wheel), the dependency
cache, reproducible zips, and pip failures."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from squall.cli import packaging
from squall.cli.packaging import BuildError, build_package, pip_runs, requirements_key
from squall.core.errors import InvalidParameterValue, RequestTooLarge
from squall.functions.store.code import CodeStore, code_sha256


@pytest.fixture(autouse=True)
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip must never reach an index in these tests: only the local wheel or directory is installable."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def make_wheel(directory: Path, name: str = "tinydep", version: str = "1.0", body: str = "VALUE = 42\n") -> Path:
    """A minimal pure-Python wheel, built by hand: pip installs it with no network and no build backend."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    d.mkdir()
    (d / "app.py").write_text("import tinydep\n\ndef handler(event, context):\n    return tinydep.VALUE\n")
    (d / "lib").mkdir()
    (d / "lib" / "util.py").write_text("X = 1\n")
    run = d / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    for junk in (".git", "__pycache__", ".venv", ".squall", "lib/__pycache__"):
        (d / junk).mkdir(exist_ok=True)
        (d / junk / "junk.txt").write_text("junk")
    (d / "lib" / "util.cpython-311.pyc").write_bytes(b"\0")
    (d / "old.pyc").write_bytes(b"\0")
    return d


def names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()


def test_code_only(code_dir: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    data, info = build_package(code_dir, None, tmp_path / "cache", messages.append)
    assert names(data) == ["app.py", "lib/util.py", "run.sh"]
    assert info.files == 3
    assert info.size == len(data)
    assert info.code_sha256 == code_sha256(data)
    assert not info.cache_hit and not info.pip_ran
    assert info.unpacked_size == sum(
        p.stat().st_size for p in (code_dir / "app.py", code_dir / "lib/util.py", code_dir / "run.sh")
    )
    assert messages[-1].startswith("Packaged 3 files")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in zf.infolist()}
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert modes == {"app.py": 0o644, "lib/util.py": 0o644, "run.sh": 0o755}


def test_zip_is_reproducible(code_dir: Path, tmp_path: Path) -> None:
    first, _ = build_package(code_dir, None, tmp_path / "cache")
    for p in code_dir.rglob("*"):
        os.utime(p, (1_000_000_000, 1_000_000_000))  # timestamps do not matter
    (code_dir / "__pycache__" / "new.txt").write_text("ignored")
    second, _ = build_package(code_dir, None, tmp_path / "cache")
    assert first == second
    (code_dir / "lib" / "util.py").write_text("X = 2\n")
    third, _ = build_package(code_dir, None, tmp_path / "cache")
    assert third != first


def test_requirements_are_vendored_and_cached(code_dir: Path, tmp_path: Path) -> None:
    make_wheel(code_dir)  # a relative path in requirements.txt means "next to requirements.txt"
    req = code_dir / "requirements.txt"
    req.write_text("# the only dependency\n./tinydep-1.0-py3-none-any.whl\n")
    cache = tmp_path / "cache"
    runs = pip_runs()
    messages: list[str] = []

    data, info = build_package(code_dir, req, cache, messages.append)
    assert pip_runs() == runs + 1
    assert info.pip_ran and not info.cache_hit
    assert info.requirements_key == requirements_key(req)
    listed = names(data)
    assert "tinydep/__init__.py" in listed
    assert any(n.startswith("tinydep-1.0.dist-info/") for n in listed)
    assert {"app.py", "lib/util.py", "run.sh", "requirements.txt"} <= set(listed)
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in listed)
    assert any("Installing dependencies" in m for m in messages)

    again, info2 = build_package(code_dir, req, cache, messages.append)
    assert pip_runs() == runs + 1, "the second build with the same requirements must not run pip"
    assert info2.cache_hit and not info2.pip_ran
    assert again == data
    assert any("Using cached dependencies" in m for m in messages)

    # the built package extracts in the code store and imports
    art = CodeStore(tmp_path / "store", durable=False).put_zip(data)
    assert art.sha256 == info.code_sha256
    assert (art.path / "tinydep" / "__init__.py").read_text() == "VALUE = 42\n"


def test_changed_requirements_run_pip_again(code_dir: Path, tmp_path: Path) -> None:
    make_wheel(tmp_path, version="1.0")
    make_wheel(tmp_path, version="2.0", body="VALUE = 2\n")
    req = tmp_path / "requirements.txt"
    req.write_text(f"{tmp_path / 'tinydep-1.0-py3-none-any.whl'}\n")
    cache = tmp_path / "cache"
    runs = pip_runs()
    build_package(code_dir, req, cache)
    req.write_text(f"{tmp_path / 'tinydep-2.0-py3-none-any.whl'}\n")
    data, info = build_package(code_dir, req, cache)
    assert info.pip_ran and pip_runs() == runs + 2
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("tinydep/__init__.py") == b"VALUE = 2\n"


def test_cache_key_follows_includes_and_local_paths(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    base = tmp_path / "base.txt"
    base.write_text(f"{wheel}\n")
    req = tmp_path / "requirements.txt"
    req.write_text("-r base.txt\n")
    key = requirements_key(req)
    assert requirements_key(req) == key
    base.write_text(f"{wheel}\nsomething-else\n")
    key2 = requirements_key(req)
    assert key2 != key, "a change in an included file must change the key"
    os.utime(wheel, ns=(1, 1))  # the local wheel was rebuilt
    assert requirements_key(req) != key2


def test_code_wins_over_dependencies(code_dir: Path, tmp_path: Path) -> None:
    make_wheel(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text(f"{tmp_path / 'tinydep-1.0-py3-none-any.whl'}\n")
    (code_dir / "tinydep").mkdir()
    (code_dir / "tinydep" / "__init__.py").write_text("VALUE = 'mine'\n")
    data, _ = build_package(code_dir, req, tmp_path / "cache")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("tinydep/__init__.py") == b"VALUE = 'mine'\n"
        assert len([n for n in zf.namelist() if n == "tinydep/__init__.py"]) == 1


def test_empty_requirements_do_not_run_pip(code_dir: Path, tmp_path: Path) -> None:
    req = code_dir / "requirements.txt"
    req.write_text("# nothing yet\n\n")
    runs = pip_runs()
    data, info = build_package(code_dir, req, tmp_path / "cache")
    assert pip_runs() == runs
    assert not info.pip_ran and not info.cache_hit
    assert "requirements.txt" in names(data)


def test_pip_failure_reports_pip_output(code_dir: Path, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("definitely-not-a-real-package-squall==1.0\n")
    with pytest.raises(BuildError) as exc_info:
        build_package(code_dir, req, tmp_path / "cache")
    message = exc_info.value.message
    assert "pip could not install the requirements" in message
    assert "definitely-not-a-real-package-squall" in message.split("pip said:", 1)[1]
    assert isinstance(exc_info.value, InvalidParameterValue)
    # nothing half-installed is left in the cache
    assert list((tmp_path / "cache" / "deps").iterdir()) == []


def test_local_source_directory_requirement(code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local project directory (setup.py + setuptools), built offline without build isolation.  Needs the wheel
    package next to setuptools < 70.1 (without it: "invalid command 'bdist_wheel'"); hence the skip."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel", reason="setuptools < 70.1 needs the wheel package to build wheels")
    proj = tmp_path / "localdep"
    (proj / "localdep").mkdir(parents=True)
    (proj / "localdep" / "__init__.py").write_text("NAME = 'local'\n")
    (proj / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='localdep', version='0.1', packages=['localdep'])\n"
    )
    req = tmp_path / "requirements.txt"
    req.write_text("./localdep\n")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's inverted spelling of --no-build-isolation
    data, info = build_package(code_dir, req, tmp_path / "cache")
    assert info.pip_ran
    assert "localdep/__init__.py" in names(data)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="does not exist or is not a directory"):
        build_package(tmp_path / "nope", None, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="holds no files to package"):
        build_package(tmp_path / "empty", None, tmp_path / "cache")
    (tmp_path / "empty" / "app.py").write_text("")
    with pytest.raises(BuildError, match=r"Requirements file .* does not exist"):
        build_package(tmp_path / "empty", tmp_path / "missing.txt", tmp_path / "cache")


def test_symlinks_are_followed_and_cycles_skipped(tmp_path: Path) -> None:
    d = tmp_path / "app"
    (d / "real").mkdir(parents=True)
    (d / "real" / "mod.py").write_text("M = 1\n")
    (d / "alias").symlink_to("real")
    (d / "real" / "loop").symlink_to("..")
    (d / "broken.py").symlink_to("nowhere.py")
    data, _ = build_package(d, None, tmp_path / "cache")
    assert names(data) == ["alias/mod.py", "real/mod.py"]


def test_cache_inside_the_code_directory_is_not_packaged(code_dir: Path) -> None:
    data, _ = build_package(code_dir, None, code_dir / "build-cache")
    (code_dir / "build-cache" / "deps").mkdir(parents=True)
    (code_dir / "build-cache" / "deps" / "x.py").write_text("")
    again, _ = build_package(code_dir, None, code_dir / "build-cache")
    assert again == data


def test_size_limits(code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code_dir / "blob.bin").write_bytes(os.urandom(5000))
    monkeypatch.setattr(packaging, "MAX_ZIP_BYTES", 4000)
    with pytest.raises(
        RequestTooLarge, match=r"Zipped size must be smaller than 4000 bytes .* Largest entries: blob\.bin"
    ):
        build_package(code_dir, None, tmp_path / "cache")
    monkeypatch.setattr(packaging, "MAX_UNZIPPED_BYTES", 3000)
    with pytest.raises(InvalidParameterValue, match="Unzipped size must be smaller than 3000 bytes"):
        build_package(code_dir, None, tmp_path / "cache")
