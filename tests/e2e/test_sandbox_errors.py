"""Failures inside the sandbox, the way Lambda reports them; and recovery: a new instance always works."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox_helpers import NodeRunner, body, eventually
from squall.sandbox.node.instance import InitFailed

CRASHY = """
import ctypes, os, time
print("crashy init")

def handler(event, context):
    what = event.get("do")
    if what == "raise":
        def inner():
            raise ValueError("boom " + context.aws_request_id)
        inner()
    if what == "exit":
        os._exit(3)
    if what == "segv":
        ctypes.string_at(0)
    if what == "sleep":
        time.sleep(event["s"])
    if what == "mem":
        chunks = []
        for _ in range(event["mb"]):
            chunks.append(b"\\x01" * (1024 * 1024))
        return len(chunks)
    return {"ok": True, "pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def crashy(node: NodeRunner) -> Any:
    return node.load({"app.py": CRASHY}, name="crashy", timeout_s=1, memory_mb=128)


def assert_new_instance_works(node: NodeRunner, fn: Any) -> None:
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {})
        assert out.ok, out.payload
        assert body(out)["ok"] is True
    finally:
        node.stop(inst)


def test_handler_exception(node: NodeRunner, crashy: Any) -> None:
    inst = node.start(crashy)
    try:
        out = node.invoke(inst, {"do": "raise"}, request_id="exc-1")
        assert out.error_type == "ValueError"
        doc = body(out)
        assert set(doc) == {"errorMessage", "errorType", "requestId", "stackTrace"}
        assert doc["errorType"] == "ValueError"
        assert doc["errorMessage"] == "boom exc-1"
        assert doc["requestId"] == "exc-1"
        assert isinstance(doc["stackTrace"], list)
        assert any("/var/task/app.py" in s and "inner" in s for s in doc["stackTrace"])
        assert not any("squall/sandbox/runtime" in s for s in doc["stackTrace"])
        assert "[ERROR] ValueError: boom exc-1" in out.logs
        # the START..END framing still holds and the instance stays up
        assert out.logs.index("START RequestId: exc-1") < out.logs.index("[ERROR]") < out.logs.index("END RequestId")
        assert inst.alive
        assert node.invoke(inst, {}).ok
    finally:
        node.stop(inst)


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({"app.py": "import not_a_real_dependency_q\n"}, "app.handler", "Runtime.ImportModuleError",
         "Unable to import module 'app': No module named 'not_a_real_dependency_q'"),
        ({"app.py": "def handler(event, context)\n    pass\n"}, "app.handler", "Runtime.UserCodeSyntaxError",
         "Syntax error in module 'app'"),
        ({"app.py": "def handler(e, c):\n    pass\n"}, "app.nope", "Runtime.HandlerNotFound",
         "Handler 'nope' missing on module 'app'"),
        ({"app.py": "raise RuntimeError('bad config')\n"}, "app.handler", "RuntimeError", "bad config"),
    ],
)  # fmt: skip
def test_init_errors(node: NodeRunner, files: dict[str, str], handler: str, error_type: str, message: str) -> None:
    fn = node.load(files, handler=handler)
    for _ in range(2):  # each attempt fails the same way: nothing is cached from a failed init
        with pytest.raises(InitFailed) as ei:
            node.start(fn)
        doc = ei.value.document
        assert doc["errorType"] == error_type
        assert doc["errorMessage"].startswith(message)
        assert f"[ERROR] {error_type}" in ei.value.logs
    eventually(lambda: fn.instances == {}, what="failed instances are forgotten")


def test_exit_status(node: NodeRunner, crashy: Any) -> None:
    inst = node.start(crashy)
    out = node.invoke(inst, {"do": "exit"}, request_id="exit-1")
    assert out.error_type == "Runtime.ExitError"
    doc = body(out)
    assert doc["errorType"] == "Runtime.ExitError"
    assert doc["errorMessage"] == "RequestId: exit-1 Error: Runtime exited with error: exit status 3"
    assert "Runtime exited with error: exit status 3" in out.logs
    assert "Status: error\tError Type: Runtime.ExitError" in out.logs
    assert not inst.alive
    assert_new_instance_works(node, crashy)


def test_segfault(node: NodeRunner, crashy: Any) -> None:
    inst = node.start(crashy)
    out = node.invoke(inst, {"do": "segv"}, request_id="segv-1")
    assert out.error_type == "Runtime.ExitError"
    assert body(out)["errorMessage"] == "RequestId: segv-1 Error: Runtime exited with error: signal: segmentation fault"
    assert not inst.alive
    assert_new_instance_works(node, crashy)


def test_timeout(node: NodeRunner, crashy: Any) -> None:
    inst = node.start(crashy)
    out = node.invoke(inst, {"do": "sleep", "s": 30}, request_id="slow-1")
    assert out.error_type == "Sandbox.Timedout"
    doc = body(out)
    assert doc["errorType"] == "Sandbox.Timedout"
    assert doc["errorMessage"] == "RequestId: slow-1 Error: Task timed out after 1.00 seconds"
    assert "Task timed out after 1.00 seconds" in out.logs
    assert "Status: timeout" in out.logs
    assert out.duration_ms == pytest.approx(1000)
    assert not inst.alive
    assert inst.exited.done()  # the process is gone, not just abandoned
    assert inst not in crashy.instances.values()
    assert_new_instance_works(node, crashy)


def test_out_of_memory(node: NodeRunner, crashy: Any) -> None:
    if not node.node.caps.cgroups:
        pytest.skip("no memory cgroup")
    inst = node.start(crashy)
    out = node.invoke(inst, {"do": "mem", "mb": 300}, request_id="oom-1")
    assert out.error_type == "Runtime.OutOfMemory"
    doc = body(out)
    assert doc["errorType"] == "Runtime.OutOfMemory"
    assert doc["errorMessage"] == "RequestId: oom-1 Error: Runtime exited with error: signal: killed"
    assert out.max_memory_mb >= 100  # it did use (close to) all of its memory
    assert out.max_memory_mb <= 128
    assert not inst.alive
    assert_new_instance_works(node, crashy)


def test_killed_from_outside_between_invocations(node: NodeRunner, crashy: Any) -> None:
    inst = node.start(crashy)
    assert node.invoke(inst, {}).ok
    inst.kill()
    out = node.invoke(inst, {}, request_id="dead-1")
    assert out.error_type == "Runtime.ExitError"
    assert "signal: killed" in body(out)["errorMessage"]
    assert not inst.alive
    assert_new_instance_works(node, crashy)


def test_failures_do_not_poison_other_instances(node: NodeRunner, crashy: Any) -> None:
    survivor = node.start(crashy)
    victim = node.start(crashy)
    try:
        assert node.invoke(victim, {"do": "segv"}).error_type == "Runtime.ExitError"
        out = node.invoke(survivor, {})
        assert out.ok
        assert survivor.alive
    finally:
        node.stop(survivor)


def test_sys_exit_code_is_reported(node: NodeRunner) -> None:
    fn = node.load({"app.py": "import sys\ndef handler(e, c):\n    sys.exit(7)\n"})
    inst = node.start(fn)
    out = node.invoke(inst, {}, request_id="sysexit-1")
    assert out.error_type == "Runtime.ExitError"
    assert body(out)["errorMessage"] == "RequestId: sysexit-1 Error: Runtime exited with error: exit status 7"


PROTOCOL_ABUSE = """
import os, time
from squall.sandbox.protocol import Kind, encode

def handler(event, context):
    if event.get("do") == "forge":
        os.write(3, encode(Kind.RESULT, {"request_id": "someone-else", "ok": True}, b'"forged"'))
        return "real-" + context.aws_request_id
    if event.get("do") == "garbage":
        os.write(3, b"\\xff" * 16)  # not a frame
        while True:
            time.sleep(0.05)
    return {"ok": True, "rid": context.aws_request_id}
"""


@pytest.fixture(scope="module")
def abuser(node: NodeRunner) -> Any:
    return node.load({"app.py": PROTOCOL_ABUSE}, timeout_s=2)


def test_result_for_another_request_is_rejected(node: NodeRunner, abuser: Any) -> None:
    """A RESULT whose request_id is not the invocation's is a protocol violation, never an answer."""
    inst = node.start(abuser)
    first = node.invoke(inst, {"do": "forge"}, request_id="f-1")
    assert first.error_type == "Runtime.InvalidResponse"
    assert b"forged" not in first.payload
    assert body(first)["errorMessage"].startswith("RequestId: f-1 Error: ")
    assert not inst.alive
    assert inst.exited.done()  # killed, not abandoned
    assert_new_instance_works(node, abuser)


def test_malformed_frame_kills_the_instance(node: NodeRunner, abuser: Any) -> None:
    inst = node.start(abuser)
    out = node.invoke(inst, {"do": "garbage"}, request_id="g-1")
    assert out.error_type == "Runtime.InvalidResponse"
    assert not inst.alive
    assert inst.exited.done()
    assert inst.cgroup is None or not inst.cgroup.populated()  # the node's own view: nothing left in its cgroup
    assert_new_instance_works(node, abuser)


def test_log_volume_is_capped(node: NodeRunner) -> None:
    fn = node.load(
        {"app.py": "def handler(e, c):\n    for _ in range(600):\n        print('z' * 1023)\n    return 1\n"}
    )
    inst = node.start(fn)
    try:
        out = node.invoke(inst, {})
        assert out.ok
        limit = node.config.log_max_bytes_per_invocation
        assert len(out.logs.encode()) <= limit + 4096
        # (the truncation marker is checked in tests/unit/test_runtime_node_logs.py: here it depends on chunking)
        assert out.logs.splitlines()[-1].startswith("REPORT RequestId:")
        # the cap is per invocation: the next one starts from zero
        small = node.invoke(inst, {})
        assert len(small.logs.encode()) <= limit + 4096
    finally:
        node.stop(inst)
