"""Build a deployable zip from a code directory, the way ``sam build`` does.

The package holds the function's code directory (minus version-control and cache directories and compiled
bytecode) plus, when there is a requirements file, its dependencies vendored with
``pip install -r requirements.txt --target``.  The installed dependency tree is cached under ``cache_dir``, keyed by
the requirements (their content, nested ``-r``/``-c`` files and local path references) and the Python version and
platform, so a second deploy with the same requirements does not run pip.

While it builds, ``steps`` (optional) receives a ``BuildStep`` per observable phase: ``resolving`` (each package pip
collects), ``downloading`` (each distribution pip downloads or takes from its cache), ``vendoring`` (pip installing
N packages into the tree), ``zipping`` (bytes compressed of the total): pip runs without ``-q`` and its lines are
read as they come (the last ones are kept for an error message).

The zip is reproducible: entries in sorted order, fixed timestamps and permissions (0644, or 0755 for executable
files), so the same input always yields the same bytes and hence the same ``CodeSha256``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from squall.core.errors import InvalidParameterValue, RequestTooLarge
from squall.functions.store.code import MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES, code_sha256

__all__ = [
    "SKIP_DIRS",
    "SKIP_SUFFIXES",
    "BuildError",
    "BuildInfo",
    "BuildStep",
    "StepSink",
    "build_package",
    "pip_runs",
    "requirements_key",
]

#: directories never copied into a package
SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", ".squall", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
#: files never copied into a package
SKIP_SUFFIXES = (".pyc", ".pyo")

#: bump to invalidate every cached dependency tree (e.g. when the pip command line changes)
_CACHE_FORMAT = b"squall-deps-1"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_PIP_TAIL_LINES = 20
_pip_runs = 0


class BuildError(InvalidParameterValue):
    """The package could not be built (pip failed, an unreadable file, ...)."""


@dataclass(frozen=True)
class BuildInfo:
    #: the dependency tree came from the cache (False when there are no requirements)
    cache_hit: bool
    #: pip was run for this build
    pip_ran: bool
    #: files in the zip
    files: int
    #: bytes of the zip
    size: int
    #: bytes of the files once unzipped
    unpacked_size: int
    #: Lambda's CodeSha256 of the zip
    code_sha256: str
    #: the cache key of the dependencies, or "" without requirements
    requirements_key: str = ""


@dataclass(frozen=True)
class BuildStep:
    """Progress of one phase of a build: ``done`` of ``total`` (None: not known yet) packages, or bytes for zipping."""

    phase: Literal["resolving", "downloading", "vendoring", "zipping"]
    done: int
    total: int | None = None
    #: the package or file concerned, or a note such as "from the build cache"
    detail: str = ""


StepSink = Callable[[BuildStep], None]

# pip's progress lines (without -q): "Collecting numpy", "Processing ./x.whl", "  Downloading numpy-2.0-...whl (18 MB)",
# "  Using cached numpy-...whl (18 MB)", "Installing collected packages: a, b, c"
_PIP_COLLECT = re.compile(r"^(?:Collecting|Processing) (\S+)")
_PIP_DOWNLOAD = re.compile(r"^\s*(?:Downloading|Using cached) (\S+)(?: \(([^)]*)\))?")
_PIP_INSTALL = re.compile(r"^Installing collected packages: (.+)$")


def pip_runs() -> int:
    """How many times this process has run pip to install requirements (for tests and diagnostics)."""
    return _pip_runs


def build_package(
    code_dir: Path,
    requirements: Path | None,
    cache_dir: Path,
    progress: Callable[[str], None] | None = None,
    steps: StepSink | None = None,
) -> tuple[bytes, BuildInfo]:
    """Build the deployment zip of ``code_dir`` with the dependencies of ``requirements`` vendored in.

    Files of ``code_dir`` win over dependency files of the same path.  Raises BuildError (pip failed, bad input),
    InvalidParameterValue (the package unzips past Lambda's 250 MB) or RequestTooLarge (the zip is over 50 MB)."""
    say = progress or (lambda _message: None)
    step = steps or (lambda _step: None)
    code_dir = Path(code_dir)
    cache_dir = Path(cache_dir)
    if not code_dir.is_dir():
        raise BuildError(f"Code directory {code_dir} does not exist or is not a directory.")

    files: dict[str, Path] = {}
    cache_hit = pip_ran = False
    key = ""
    if requirements is not None:
        requirements = Path(requirements)
        if not requirements.is_file():
            raise BuildError(f"Requirements file {requirements} does not exist.")
        if _has_requirements(requirements):
            key = requirements_key(requirements)
            deps, cache_hit = _dependencies(requirements, key, cache_dir, say, step)
            pip_ran = not cache_hit
            files.update(_collect(deps, exclude=None))
        else:
            say(f"{requirements.name} lists no packages; nothing to install")
    files.update(_collect(code_dir, exclude=cache_dir))
    if not files:
        raise BuildError(f"Code directory {code_dir} holds no files to package.")

    data, unpacked = _zip(files, step)
    _check_limits(files, data, unpacked)
    info = BuildInfo(
        cache_hit=cache_hit,
        pip_ran=pip_ran,
        files=len(files),
        size=len(data),
        unpacked_size=unpacked,
        code_sha256=code_sha256(data),
        requirements_key=key,
    )
    say(f"Packaged {info.files} files: {_mb(info.size)} zipped, {_mb(info.unpacked_size)} unzipped")
    return data, info


# -- requirements --


def _requirement_lines(path: Path) -> Iterator[str]:
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield line


def _has_requirements(path: Path) -> bool:
    return any(True for _ in _requirement_lines(path))


def _local_reference(line: str, base: Path) -> tuple[str, Path] | None:
    """("include", file) for -r/-c, ("path", p) for a local path requirement, else None."""
    for opt in ("-r", "--requirement", "-c", "--constraint"):
        if line == opt or line.startswith((opt + " ", opt + "=")):
            return "include", base / line[len(opt) :].lstrip(" =").strip()
    for opt in ("-e", "--editable"):
        if line.startswith((opt + " ", opt + "=")):
            line = line[len(opt) :].lstrip(" =").strip()
    if line.startswith("-"):
        return None
    target = line.split(" @ ", 1)[1].strip() if " @ " in line else line.split(";", 1)[0].strip()
    if target.startswith("file://"):
        target = target[len("file://") :]
    elif not target.startswith((".", "/", "~")):
        return None
    return "path", base / os.path.expanduser(target)


def _fingerprint(path: Path, h: hashlib._Hash) -> None:
    """Feed the stat identity (path, size, mtime) of a local requirement into the hash."""
    if path.is_file():
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith((".egg-info",)))
        for name in sorted(filenames):
            p = Path(dirpath, name)
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def requirements_key(requirements: Path) -> str:
    """Cache key of a requirements file's dependency tree: its content, the content of files it includes (-r, -c),
    the identity of local path requirements, and the Python implementation, version and platform."""
    h = hashlib.sha256()
    h.update(_CACHE_FORMAT + b"\n")
    impl = sys.implementation.name
    h.update(f"{impl}-{sys.version_info.major}.{sys.version_info.minor}-{sys.platform}-{platform.machine()}\n".encode())
    seen: set[Path] = set()

    def feed(path: Path) -> None:
        path = path.resolve()
        if path in seen:
            return
        seen.add(path)
        try:
            h.update(path.read_bytes() + b"\0")
        except OSError:
            h.update(b"<missing>\0")  # pip reports it
            return
        for line in _requirement_lines(path):
            ref = _local_reference(line, path.parent)
            if ref is None:
                continue
            kind, target = ref
            if kind == "include":
                feed(target)
            elif target.exists():
                _fingerprint(target.resolve(), h)

    feed(requirements)
    return h.hexdigest()


def _dependencies(
    requirements: Path, key: str, cache_dir: Path, say: Callable[[str], None], step: StepSink
) -> tuple[Path, bool]:
    """The installed dependency tree of ``requirements``: from the cache, or installed now and cached."""
    global _pip_runs
    deps_root = cache_dir / "deps"
    final = deps_root / key
    if final.is_dir():
        say(f"Using cached dependencies for {requirements.name} ({key[:12]})")
        packages = sum(1 for p in final.iterdir() if p.name.endswith(".dist-info"))
        step(BuildStep("vendoring", packages, packages, "from the build cache"))
        return final, True
    deps_root.mkdir(parents=True, exist_ok=True)
    tmp = deps_root / f".tmp-{key}-{uuid.uuid4().hex}"
    tmp.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-r",
        str(requirements.resolve()),
        "--target",
        str(tmp),
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--progress-bar",
        "off",
    ]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PIP_USER", None)  # --user and --target do not mix
    say(f"Installing dependencies from {requirements} with pip ...")
    _pip_runs += 1
    try:
        # cwd: relative paths in the requirements file mean "next to the requirements file"
        returncode, lines = _run_pip(cmd, requirements.resolve().parent, env, step)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        errors = [ln for ln in lines if ln.startswith("ERROR")]  # pip's own diagnosis first, then the rest
        tail = "\n".join((errors or lines)[-_PIP_TAIL_LINES:]) or "(no output)"
        raise BuildError(
            f"pip could not install the requirements in {requirements} (exit code {returncode}). "
            f"Fix the requirements file (or your package index settings) and build again. pip said:\n{tail}"
        )
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build cached the same tree first
    return final, False


def _run_pip(cmd: list[str], cwd: Path, env: dict[str, str], step: StepSink) -> tuple[int, list[str]]:
    """Run pip, turning its progress lines into steps as they come; (exit code, its last non-blank lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=4 * _PIP_TAIL_LINES)
    collected = downloaded = 0
    installing: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line.strip():
                continue
            tail.append(line)
            if m := _PIP_COLLECT.match(line):
                collected += 1
                step(BuildStep("resolving", collected, None, m.group(1)))
            elif (m := _PIP_DOWNLOAD.match(line)) and not m.group(1).endswith(".metadata"):
                downloaded += 1
                step(BuildStep("downloading", downloaded, None, m.group(1).rsplit("/", 1)[-1]))
            elif m := _PIP_INSTALL.match(line):
                installing = [p.strip() for p in m.group(1).split(",") if p.strip()]
                step(BuildStep("vendoring", 0, len(installing), ", ".join(installing)))
        returncode = proc.wait()
    if returncode == 0 and installing:
        step(BuildStep("vendoring", len(installing), len(installing), ", ".join(installing)))
    return returncode, list(tail)


# -- collecting and zipping --


def _collect(root: Path, exclude: Path | None) -> dict[str, Path]:
    """Every file under ``root`` that belongs in a package, by its path in the zip.  Follows symlinks (the zip
    holds their contents), skipping symlink cycles, broken links, SKIP_DIRS, SKIP_SUFFIXES and ``exclude``."""
    out: dict[str, Path] = {}
    excluded = exclude.resolve() if exclude is not None and exclude.exists() else None

    def walk(directory: Path, rel: str, ancestors: frozenset[str]) -> None:
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise BuildError(f"Could not read directory {directory}: {exc.strerror or exc}")
        for child in children:
            path = Path(child.path)
            arcname = f"{rel}{child.name}"
            if child.is_dir():  # follows symlinks
                real = os.path.realpath(path)
                if child.name in SKIP_DIRS or real in ancestors or (excluded is not None and Path(real) == excluded):
                    continue
                walk(path, arcname + "/", ancestors | {real})
            elif child.is_file() and not child.name.endswith(SKIP_SUFFIXES):  # broken links, fifos: skipped
                try:
                    arcname.encode("utf-8")
                except UnicodeEncodeError:
                    raise BuildError(f"File name {path!s} is not valid UTF-8; rename it.")
                out[arcname] = path

    walk(root, "", frozenset({os.path.realpath(root)}))
    return out


def _zip(files: dict[str, Path], step: StepSink) -> tuple[bytes, int]:
    buf = io.BytesIO()
    unpacked = 0
    total = 0
    for path in files.values():
        try:
            total += path.stat().st_size
        except OSError:
            pass  # reported below when it is read
    reported = 0
    step(BuildStep("zipping", 0, total))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel in sorted(files):
            path = files[rel]
            try:
                st = path.stat()
                executable = bool(st.st_mode & 0o111)
                zi = zipfile.ZipInfo(rel, _FIXED_DATE)
                zi.create_system = 3
                zi.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                zi.file_size = st.st_size
                with path.open("rb") as src, zf.open(zi, "w") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            except OSError as exc:
                raise BuildError(f"Could not read {path}: {exc.strerror or exc}")
            unpacked += zi.file_size
            if unpacked - reported >= 1024 * 1024:  # about one step per MB, not one per file
                reported = unpacked
                step(BuildStep("zipping", unpacked, max(total, unpacked), rel))
    step(BuildStep("zipping", unpacked, unpacked))
    return buf.getvalue(), unpacked


def _check_limits(files: dict[str, Path], data: bytes, unpacked: int) -> None:
    if unpacked <= MAX_UNZIPPED_BYTES and len(data) <= MAX_ZIP_BYTES:
        return
    sizes: dict[str, int] = {}
    for rel, path in files.items():
        top = rel.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + path.stat().st_size
    biggest = ", ".join(f"{name} ({_mb(n)})" for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:5])
    if unpacked > MAX_UNZIPPED_BYTES:
        raise InvalidParameterValue(
            f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes; this package unzips to {unpacked} "
            f"bytes. Remove unneeded files or dependencies. Largest entries: {biggest}"
        )
    raise RequestTooLarge(
        f"Zipped size must be smaller than {MAX_ZIP_BYTES} bytes for a direct upload; this package is {len(data)} "
        f"bytes. Remove unneeded files or dependencies. Largest entries: {biggest}"
    )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
