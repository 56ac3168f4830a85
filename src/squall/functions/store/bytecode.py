"""Bytecode for deployed code, compiled once at deploy: a zygote or instance then loads ``.pyc`` files instead of
compiling every vendored module on each cold start (sandboxes never write bytecode: ``/var/task`` is read-only and
``PYTHONDONTWRITEBYTECODE`` is set).  Measured with Pillow vendored: ``import PIL.Image`` from sources costs the
compile of ~40 modules on every cold start (see docs/design.md, "The coldest start").

The tree is the function's (hostile) code, so compiling it never runs it: ``compileall`` only parses, in a separate
interpreter (``-I``: no environment, no user site) with CPU time, memory and wall-clock limits; a parser crash or
a hang costs that process only, and the package keeps whatever was compiled (each ``.pyc`` is written atomically).
The ``.pyc`` files are ``unchecked-hash`` ones: the store's trees never change once sealed, so an import reads the
``.pyc`` without looking at the source's timestamp (which extraction does not preserve).  The interpreter is the
one sandboxes run (``sys._base_executable``), so the magic number matches.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

__all__ = ["COMPILE_TIMEOUT_S", "compile_tree"]

#: wall-clock bound of one package's compile (a 250 MB package of Python sources takes well under this)
COMPILE_TIMEOUT_S = 120.0
_CPU_S = 120
_MEMORY_BYTES = 2 << 30


def _limits() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU_S, _CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def compile_tree(root: Path, timeout_s: float = COMPILE_TIMEOUT_S) -> bool:
    """Write ``__pycache__/*.pyc`` beside every ``.py`` file under ``root`` (symlinks are not followed out of it:
    the store refused links that leave the tree).  True if every file compiled; False if some did not (a syntax
    error is the function's own problem, reported when it is imported) or the compile was stopped."""
    py = getattr(sys, "_base_executable", sys.executable)
    args = [py, "-I", "-m", "compileall", "-q", "-q", "-r", "64", "--invalidation-mode", "unchecked-hash", str(root)]
    try:
        done = subprocess.run(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout_s, preexec_fn=_limits, env={"PATH": os.defpath}, cwd=str(root),
        )  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0
