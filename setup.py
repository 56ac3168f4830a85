"""Build hook: the server's hot path compiled with mypyc, on request (``SQUALL_COMPILE=1``).

Everything else about the package is in pyproject.toml.  By default Squall installs as pure Python.  With
``SQUALL_COMPILE=1 pip install .`` (not ``-e``) the modules in :data:`HOT_PATH` are compiled to C extensions by
mypyc (mypy's compiler; pulled into the build environment as a build requirement only then) when a C compiler and
the Python headers are present; otherwise the install says why in one line and stays pure Python.  An editable
install never compiles: the extension modules would sit next to the sources and shadow every later edit.
docs/design.md ("The hot path") has the measurements and the reasons it is not the default.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

#: Squall's own modules on a warm invocation's path that mypyc compiles as they are (modules with async generators,
#: such as squall/router.py, it refuses); the frame codec is also imported by the base zygote and every instance
HOT_PATH = [
    "squall/aws/auth.py",
    "squall/aws/sigv4/canonical.py",
    "squall/aws/sigv4/errors.py",
    "squall/aws/sigv4/parse.py",
    "squall/aws/sigv4/verify.py",
    "squall/core/ids.py",
    "squall/core/jsonlimits.py",
    "squall/core/report.py",
    "squall/core/tick_writes.py",
    "squall/functions/invoke_api.py",
    "squall/functions/invoker.py",
    "squall/functions/metering.py",
    "squall/functions/pool.py",
    "squall/sandbox/node/instance.py",
    "squall/sandbox/node/link.py",
    "squall/sandbox/protocol.py",
    "squall/scheduler/decide.py",
    "squall/scheduler/keep_alive.py",
    "squall/scheduler/placement.py",
    "squall/scheduler/routing.py",
    "squall/scheduler/state.py",
    "squall/telemetry/tracing.py",
]


def _say(message: str) -> None:
    print(f"squall: {message}", file=sys.stderr)


def _why_not() -> str | None:
    """Why this build stays pure Python, or None to compile."""
    if os.environ.get("SQUALL_COMPILE", "0") in ("", "0"):
        return ""  # the default: nothing to say
    if "editable_wheel" in sys.argv or "develop" in sys.argv:
        return "SQUALL_COMPILE ignored for an editable install (compiled modules would shadow edited sources)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"SQUALL_COMPILE: no C compiler ({cc}): installing pure Python"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "SQUALL_COMPILE: no Python headers (Python.h; Debian: python3-dev): installing pure Python"
    return None


def _build() -> tuple[list[object], list[str]]:
    """(extension modules, build requirements)."""
    why = _why_not()
    if why is not None:
        if why:
            _say(why)
        return [], []
    if {"egg_info", "dist_info", "sdist"} & set(sys.argv[1:]):  # metadata only: no need to run the compiler
        return [], ["mypy>=1.11"]
    try:
        from mypyc.build import mypycify
    except ImportError:  # setuptools asks for the build requirements first: mypy is installed after this answer
        return [], ["mypy>=1.11"]
    cwd = os.getcwd()
    os.chdir(Path(__file__).resolve().parent / "src")  # module names come from the paths (squall/...)
    try:
        _say(f"compiling {len(HOT_PATH)} hot-path modules with mypyc (SQUALL_COMPILE=1)")
        # (the build environment has mypy, not Squall's dependencies: their types are read as Any)
        paths = ["--ignore-missing-imports", *HOT_PATH]
        return list(mypycify(paths, opt_level="3", target_dir=str(Path(cwd) / "build" / "mypyc"))), ["mypy>=1.11"]
    finally:
        os.chdir(cwd)


ext_modules, setup_requires = _build()
setup(ext_modules=ext_modules, setup_requires=setup_requires)
