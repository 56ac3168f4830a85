"""A function's Python is Lambda's: its code, its layers, the runtime's site-packages (boto3 and its dependencies)
and the stdlib; never the server's virtualenv nor Squall's own source."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox_helpers import NodeRunner, body

IMPORTS = r"""
import importlib, os, subprocess, sys

def try_import(name):
    try:
        importlib.import_module(name)
        return "ok"
    except ModuleNotFoundError as e:
        return "ModuleNotFoundError"
    except Exception as e:
        return type(e).__name__

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        return e.strerror

CHILD = '''
import importlib.util, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
print([found(n) for n in sys.argv[1:]])
'''

def handler(event, context):
    names = event["names"]
    child = subprocess.run([sys.executable, "-c", CHILD, *names], capture_output=True, text=True)
    return {
        "imports": {n: try_import(n) for n in names},
        "sys_path": sys.path,
        "executable": sys.executable,
        "runtime_dir": os.environ.get("LAMBDA_RUNTIME_DIR"),
        "child": child.stdout.strip() or child.stderr[-300:],
        "listings": {p: listing(p) for p in event["paths"]},
        "boto3": __import__("boto3").__file__,
    }
"""

MUST_FAIL = [
    "starlette",
    "requests",
    "uvicorn",
    "squall",
    "squall.server",
    "squall.sandbox.node.node",
    "pytest",
    "yaml",
]
MUST_WORK = ["boto3", "botocore", "jmespath", "s3transfer", "dateutil", "six", "urllib3", "snapshot_restore_py"]


@pytest.fixture(scope="module")
def result(node: NodeRunner) -> Any:
    import squall

    fn = node.load({"app.py": IMPORTS}, name="imports", timeout_s=30)
    paths = [sys.prefix, str(Path(squall.__file__).resolve().parent.parent)]
    out = node.call(fn, {"names": MUST_FAIL + MUST_WORK, "paths": paths})
    assert out.ok, out.payload
    return body(out), paths


def test_server_packages_are_not_importable(result: Any) -> None:
    res, _ = result
    for name in MUST_FAIL:
        assert res["imports"][name] == "ModuleNotFoundError", (name, res["imports"][name])


def test_lambda_runtime_packages_are(result: Any) -> None:
    res, _ = result
    for name in MUST_WORK:
        assert res["imports"][name] == "ok", (name, res["imports"][name])
    assert res["boto3"].startswith("/var/runtime/")
    assert res["runtime_dir"] == "/var/runtime"


def test_sys_path_is_lambdas(result: Any) -> None:
    res, _ = result
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert res["sys_path"][:4] == ["/var/task", f"/opt/python/lib/{py}/site-packages", "/opt/python", "/var/runtime"]
    rest = res["sys_path"][4:]
    assert rest and all(p.startswith(os.path.realpath(sys.base_prefix)) for p in rest), rest
    assert not any("site-packages" in p for p in rest)


def test_a_python_subprocess_sees_the_same_runtime(result: Any) -> None:
    """The handler's ``sys.executable`` is the interpreter, not the server's virtualenv; a Python child finds
    boto3 (PYTHONPATH is the runtime directory, as on Lambda) and none of the server's packages."""
    res, _ = result
    assert not res["executable"].startswith(sys.prefix) or sys.prefix == sys.base_prefix
    flags = [n for n, found in zip(MUST_FAIL + MUST_WORK, eval(res["child"]), strict=True) if found]
    assert "boto3" in flags and "starlette" not in flags and "requests" not in flags, res["child"]


def test_server_environment_is_hidden(result: Any) -> None:
    res, paths = result
    for p in paths:
        assert res["listings"][p] in ([], "No such file or directory"), (p, res["listings"][p])
