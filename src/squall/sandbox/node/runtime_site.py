"""The runtime site-packages a function sees: exactly what Lambda's Python runtime ships, nothing of the server's.

Lambda's Python runtime carries boto3 and its dependencies (botocore, jmespath, s3transfer, python-dateutil, six,
urllib3) next to the stdlib; a function that imports anything else must vendor it.  Squall builds that directory
once per data directory (and again when the server's boto3/botocore versions change): the distributions in the
dependency closure of :data:`RUNTIME_ROOTS` are hard-linked (copied across filesystems) from the server's own
environment into ``<data_dir>/runtime/python3.11-<fingerprint>/``, with Squall's ``snapshot_restore_py`` (the
SnapStart hooks module Lambda's runtime provides).  Function zygotes bind it read-only at ``/var/runtime`` (as
``LAMBDA_RUNTIME_DIR`` on Lambda) and put it on ``sys.path`` after the function's code and layers; the server's
virtualenv and source tree are hidden from the function's mount namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["RUNTIME_ROOTS", "SANDBOX_PATH", "distributions", "ensure", "python_tag"]

#: what Lambda's Python runtime ships (its dependencies come along)
RUNTIME_ROOTS = ("boto3",)
#: where function zygotes bind the directory (LAMBDA_RUNTIME_DIR on Lambda)
SANDBOX_PATH = "/var/runtime"
_SHIMS = Path(__file__).resolve().parent.parent / "runtime" / "shims"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def python_tag() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(roots: tuple[str, ...] = RUNTIME_ROOTS) -> list[metadata.Distribution]:
    """The installed distributions in the dependency closure of ``roots`` (extras left out)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _canon(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker:
                continue
            m = _NAME.match(spec)
            if m:
                todo.append(m.group(1))
    return [seen[k] for k in sorted(seen)]


def _fingerprint(dists: list[metadata.Distribution]) -> str:
    h = hashlib.sha256(python_tag().encode())
    for d in dists:
        h.update(f"\n{d.metadata['Name']}=={d.version}".encode())
    for f in sorted(_SHIMS.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _place(src: Path, dst: Path, made: set[Path]) -> None:
    parent = dst.parent
    if parent not in made:
        parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        made.add(parent)
    if os.stat(src).st_mode & 0o004:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)  # another filesystem, or not readable by the instances' uids: a 0644 copy
    os.chmod(dst, 0o644)


def _build(target: Path, dists: list[metadata.Distribution]) -> None:
    made: set[Path] = set()
    for dist in dists:
        for rel in dist.files or []:
            if ".." in Path(rel).parts:
                continue  # scripts installed into bin/: not part of the package
            src = Path(str(dist.locate_file(rel)))
            if src.is_file():
                _place(src, target / rel, made)
    for src in _SHIMS.rglob("*.py"):
        _place(src, target / src.relative_to(_SHIMS), made)
    for root, _dirs, _files in os.walk(target):  # every directory, whatever the umask: instances read them
        os.chmod(root, 0o755)


_STATE: tuple[list[metadata.Distribution], str] | None = None


def _state() -> tuple[list[metadata.Distribution], str]:
    """The closure and its fingerprint, computed once per process (~20 ms of metadata scanning): the base zygote
    computes it when it imports this module, and every function zygote it forks inherits it."""
    global _STATE
    if _STATE is None:
        dists = distributions()
        _STATE = (dists, _fingerprint(dists))
    return _STATE


def ensure(data_dir: Path) -> Path:
    """The runtime site-packages for this server's environment under ``data_dir``, built if missing."""
    dists, fingerprint = _state()
    root = data_dir / "runtime"
    target = root / f"{python_tag()}-{fingerprint}"
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        tmp = root / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _build(tmp, dists)
        (tmp / ".complete").write_text("".join(f"{d.metadata['Name']}=={d.version}\n" for d in dists))
        os.chmod(tmp / ".complete", 0o644)
        os.rename(tmp, target)
        for old in root.glob(f"{python_tag()}-*"):
            if old != target:
                with contextlib.suppress(OSError):
                    shutil.rmtree(old)
    return target


_state()
