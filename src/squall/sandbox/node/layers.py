"""Merging a function's layers into the one tree its sandbox sees at ``/opt``.

Lambda extracts a function's layers into ``/opt`` in the order they are listed: a file of a later layer replaces the
same path of an earlier one.  Here each layer version is already extracted once, read-only, in the code store; the
node builds the merged tree from hardlinks (copies across file systems) under ``<data_dir>/opt/<key>``, where the key
is a digest of the ordered list of layer trees, so functions sharing the same layers share one merged tree and a
restart reuses it.  The tree is built beside its final name and renamed into place when complete; the function
zygote binds it read-only at ``/opt`` (``squall.sandbox.node.isolation.enter_function_sandbox``).

Nothing here follows a symlink of a layer: links are recreated as links (the code store allows only relative links
that stay inside their package), files are hardlinked or copied by name, never through a link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = ["merge_layers", "merged_layers_key"]


def merged_layers_key(layers: Sequence[Path]) -> str:
    """The cache key of an ordered list of layer trees (their paths and the modification times of their roots:
    code-store trees are content-addressed and never change; other directories are rebuilt when they do)."""
    h = hashlib.sha256()
    for p in layers:
        st = os.stat(p)
        h.update(f"{Path(p).resolve()}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()[:32]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _place_file(src: str, dst: str) -> None:
    _remove(dst)
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # another file system, or hardlinks refused: copy
        shutil.copy2(src, dst, follow_symlinks=False)


def _merge_into(layers: Sequence[Path], dst: str) -> None:
    for layer in layers:
        base = str(layer)
        for root, dirs, files in os.walk(base, followlinks=False):
            rel = os.path.relpath(root, base)
            out = dst if rel == "." else os.path.join(dst, rel)
            for name in list(dirs):
                src = os.path.join(root, name)
                target = os.path.join(out, name)
                if os.path.islink(src):  # a link to a directory is a link like any other
                    _place_file(src, target)
                    continue
                if not (os.path.isdir(target) and not os.path.islink(target)):
                    _remove(target)
                    os.mkdir(target, 0o755)
            for name in files:
                _place_file(os.path.join(root, name), os.path.join(out, name))


def _seal(path: str) -> None:
    """Directories read-only (0555), owned by root when we are root; files keep their (read-only) modes."""
    as_root = os.geteuid() == 0
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                if as_root:
                    os.chown(p, 0, 0)
                os.chmod(p, 0o555)
    if as_root:
        os.chown(path, 0, 0)
    os.chmod(path, 0o555)


def merge_layers(layers: Sequence[Path], cache_root: Path) -> Path:
    """The merged tree of ``layers`` (in order: later layers override earlier files), built once per key."""
    cache_root.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_root, 0o755)
    final = cache_root / merged_layers_key(layers)
    if final.is_dir():
        return final
    tmp = cache_root / f".tmp-{uuid.uuid4().hex}"
    os.mkdir(tmp, 0o755)
    try:
        _merge_into(layers, str(tmp))
        _seal(str(tmp))
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            _discard(tmp)  # built concurrently by another load: keep theirs
    except BaseException:
        _discard(tmp)
        raise
    return final


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                p = os.path.join(root, name)
                if not os.path.islink(p) and stat.S_ISDIR(os.lstat(p).st_mode):
                    os.chmod(p, 0o755)
        os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)
