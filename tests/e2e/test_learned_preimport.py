"""Learned pre-import on a real server: a module the handler imports lazily is recorded by its instance, checked by
the zygote's sandboxed import probe and pre-imported by the next zygote; a pinned module (tag squall:preimport, i.e.
squall.yaml ``preimport:``) is pre-imported from the first zygote; a deploy (new code) resets what was learned; the
set is visible through ``/_squall/api/functions/{name}/preimport`` and ``squall functions show``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, eventually, signed_get, zip_of

APP = """
import sys

def handler(event, context):
    seen = {m: m in sys.modules for m in ("lazydep", "xml.dom.minidom")}  # before this call imports anything
    import lazydep
    return {"seen": seen, "answer": lazydep.ANSWER, "version": VERSION}

VERSION = {version}
"""
FILES = {
    "lazydep/__init__.py": "ANSWER = 42\n",
    "lazydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: lazydep\nVersion: 1.0\n",
    "lazydep-1.0.dist-info/top_level.txt": "lazydep\n",
}


def code(version: int) -> bytes:
    return zip_of({**FILES, "app.py": APP.replace("{version}", str(version))})


def call(lam: Any) -> dict[str, Any]:
    out = lam.invoke(FunctionName="lazy", Payload=b"{}")
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    return json.loads(out["Payload"].read())


def preimport(proc: SquallProcess) -> dict[str, Any]:
    status, body = signed_get(proc.url, "/_squall/api/functions/lazy/preimport")
    assert status == 200, body
    return body


def zygotes(proc: SquallProcess) -> list[Any]:
    _, body = signed_get(proc.url, "/_squall/api/pool")
    return [z for z in body["zygotes"] if z["function"] == "lazy"]


def test_lazy_import_is_learned_preimported_by_the_next_zygote_and_reset_by_a_deploy(tmp_path: Path) -> None:
    proc = SquallProcess(
        tmp_path / "data", SQUALL_KEEP_ALIVE_S="0.5", SQUALL_ZYGOTE_KEEP_ALIVE_S="0.5", SQUALL_REAP_INTERVAL_S="0.1"
    ).start()
    try:
        lam = proc.client()
        lam.create_function(
            FunctionName="lazy", Runtime="python3.11", Handler="app.handler", Timeout=10,
            Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": code(1)},
            Tags={"squall:preimport": "xml.dom.minidom"},
        )  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="lazy")
        assert preimport(proc)["learned"] == []
        first = call(lam)
        # the pinned module was pre-imported by the very first zygote; the lazy import not (nothing learned yet)
        assert first["seen"] == {"lazydep": False, "xml.dom.minidom": True}, first
        # the instance reported the lazy import; the zygote's import probe (a sandboxed instance) confirmed it
        got = eventually(lambda: (p := preimport(proc))["probed"] and "lazydep" in p["preloaded"] and p, timeout_s=60,
                         what="lazydep learned and probed")  # fmt: skip
        assert "lazydep" in got["learned"] and got["pinned"] == ["xml.dom.minidom"], got
        assert "app" not in got["learned"] and "app" not in got["preloaded"]  # its own module: never pre-imported
        # the instance and the zygote are reaped (keep-alives 0.5 s): the next call starts a new zygote
        eventually(lambda: not zygotes(proc), timeout_s=60, what="the zygote unloaded")
        second = call(lam)
        assert second["seen"] == {"lazydep": True, "xml.dom.minidom": True}, second

        env = {**os.environ, "SQUALL_ENDPOINT": proc.url, "SQUALL_ACCESS_KEY_ID": KEY_ID,
               "SQUALL_SECRET_ACCESS_KEY": SECRET, "COLUMNS": "250"}  # fmt: skip
        shown = subprocess.run(
            [sys.executable, "-m", "squall.cli.main", "functions", "show", "lazy"],
            env=env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "pre-import: learned" in shown.stdout and "lazydep" in shown.stdout, shown.stdout
        assert "xml.dom.minidom" in shown.stdout

        # a deploy (new code) starts from nothing: the next zygote pre-imports only the pinned module
        lam.update_function_code(FunctionName="lazy", ZipFile=code(2))
        lam.get_waiter("function_updated_v2").wait(FunctionName="lazy")
        reset = preimport(proc)
        assert reset["learned"] == [] and reset["preloaded"] == [] and not reset["probed"], reset
        eventually(lambda: not zygotes(proc), timeout_s=60, what="the old code's zygote unloaded")
        third = call(lam)
        assert third["version"] == 2 and third["seen"] == {"lazydep": False, "xml.dom.minidom": True}, third
    finally:
        assert proc.stop() == 0


def test_a_bad_pinned_module_name_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data").start()
    try:
        lam = proc.client()
        try:
            lam.create_function(
                FunctionName="bad", Runtime="python3.11", Handler="app.handler", Role="arn:aws:iam::000000000000:role/x",
                Code={"ZipFile": code(1)}, Tags={"squall:preimport": "PIL.Image ../etc"},
            )  # fmt: skip
        except lam.exceptions.InvalidParameterValueException as e:
            assert "squall:preimport" in str(e) and "'../etc'" in str(e), str(e)
        else:
            raise AssertionError("a bad squall:preimport tag was accepted")
    finally:
        assert proc.stop() == 0


HOSTILE = """
import sys, types

def handler(event, context):
    import lazydep
    # what an instance reports comes from the function's code: poison sys.modules with names no zygote may try
    bad = ["../../etc/passwd", "a b", "squall.sandbox.node.node", "x" * 300, "os;rm", "__main__"]
    for name in bad + [f"junk{i}" for i in range(3000)]:
        sys.modules[name] = types.ModuleType("m")
    return lazydep.ANSWER
"""


def test_a_hostile_import_report_is_validated_bounded_and_probed(node: Any) -> None:
    from squall.sandbox.node.preimport import MAX_NAMES

    fn = node.load({**FILES, "app.py": HOSTILE}, name="poison", code_sha256="p0150n")
    assert node.call(fn).ok
    node.settle(fn)
    got = node.node.learned_imports("poison", "$LATEST", "p0150n")
    learned = got["learned"]
    assert 0 < len(learned) <= MAX_NAMES and got["truncated"]  # bounded: the rest of the flood was dropped
    assert not any(n.startswith(("..", "squall", "__")) or " " in n or ";" in n or len(n) > 200 for n in learned)
    # the names were tried by the sandboxed probe, never by the zygote: none of the fakes imports, so none is
    # pre-imported; the real lazy import is
    assert "lazydep" in got["preloaded"]
    assert not any(n.startswith("junk") for n in got["preloaded"]), got["preloaded"][:20]
    assert "lazydep" in fn.preloaded and not any(n.startswith("junk") for n in fn.preloaded)
    assert node.call(fn).ok  # and the function still works from the zygote that pre-imported it in place
    node.unload(fn)


SLOW_PROBE_APP = """
import os
import stat
import sys
import time

if stat.S_ISCHR(os.fstat(1).st_mode):  # the import probe (its output goes to /dev/null; an instance's to its log)
    time.sleep(4)

def handler(event, context):
    seen = "lazydep" in sys.modules
    import lazydep
    return {"seen": seen}
"""


def test_a_name_learned_while_the_zygote_probes_is_probed_next(tmp_path: Path) -> None:
    """The first call's lazy import is reported while the zygote's first probe (for the pinned name) still runs: it
    must be probed once that one ends (it never was: the re-probe saw its own, ending, task as still running)."""
    proc = SquallProcess(tmp_path / "data").start()
    try:
        lam = proc.client()
        lam.create_function(
            FunctionName="lazy", Runtime="python3.11", Handler="app.handler", Timeout=10,
            Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": zip_of({**FILES, "app.py": SLOW_PROBE_APP})},
            Tags={"squall:preimport": "json"},
        )  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="lazy")
        assert call(lam) == {"seen": False}  # answered while the first probe sleeps in the handler module's import
        assert "lazydep" in preimport(proc)["learned"]
        eventually(lambda: "lazydep" in preimport(proc)["preloaded"], timeout_s=60, what="lazydep probed")
    finally:
        assert proc.stop() == 0
