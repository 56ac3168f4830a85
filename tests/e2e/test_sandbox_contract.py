"""The Lambda handler contract, inside the real sandbox: event in / JSON out, context, environment, logs."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import pytest

from tests.sandbox_helpers import SECRET_ENV, SECRET_VALUE, NodeRunner, body

INTROSPECT = """
import os, sys, time, logging

def handler(event, context):
    r1 = context.get_remaining_time_in_millis()
    time.sleep(0.02)  # so that the remaining time visibly goes down
    r2 = context.get_remaining_time_in_millis()
    cc = context.client_context
    return {
        "event": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": [r1, r2],
        "client_custom": cc.custom if cc else None,
        "client_installation_id": cc.client.installation_id if cc and cc.client else None,
        "identity_id": context.identity.cognito_identity_id,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
    }
"""


@pytest.fixture(scope="module")
def introspect(node: NodeRunner) -> Any:
    return node.load(
        {"app.py": INTROSPECT}, name="introspect", timeout_s=5, environment={"MY_SETTING": "on", "TZ_USER": "x"}
    )


@pytest.fixture(scope="module")
def introspect_out(node: NodeRunner, introspect: Any) -> dict[str, Any]:
    out = node.call(
        introspect,
        {"hello": "world", "n": [1, 2.5, None, True], "u": "é✓"},
        request_id="req-ctx-1",
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:introspect:live",
        trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        client_context={"client": {"installation_id": "inst-1"}, "custom": {"k": "v"}},
        identity={"cognitoIdentityId": "cog-1", "cognitoIdentityPoolId": "pool-1"},
    )
    assert out.ok, out.payload
    return body(out)


def test_event_in_json_out(introspect_out: dict[str, Any]) -> None:
    assert introspect_out["event"] == {"hello": "world", "n": [1, 2.5, None, True], "u": "é✓"}


def test_context_attributes(introspect_out: dict[str, Any]) -> None:
    o = introspect_out
    assert o["aws_request_id"] == "req-ctx-1"
    assert o["function_name"] == "introspect"
    assert o["function_version"] == "$LATEST"
    assert o["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:introspect:live"
    assert o["memory_limit_in_mb"] == "128"
    assert o["log_group_name"] == "/aws/lambda/introspect"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", o["log_stream_name"]), o["log_stream_name"]
    assert o["client_custom"] == {"k": "v"}
    assert o["client_installation_id"] == "inst-1"
    assert o["identity_id"] == "cog-1"


def test_remaining_time_decreases_within_timeout(introspect_out: dict[str, Any]) -> None:
    r1, r2 = introspect_out["remaining"]
    assert 0 < r2 < r1 <= 5000


def test_lambda_environment(introspect_out: dict[str, Any]) -> None:
    env = introspect_out["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "introspect"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/introspect"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["TZ"] == ":UTC"
    assert env["_X_AMZN_TRACE_ID"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert env["MY_SETTING"] == "on"
    assert introspect_out["cwd"] == "/var/task"


def test_node_environment_does_not_leak(introspect_out: dict[str, Any]) -> None:
    env = introspect_out["env"]
    assert os.environ[SECRET_ENV] == SECRET_VALUE  # the node was started with it
    assert SECRET_ENV not in env
    assert SECRET_VALUE not in json.dumps(env)
    lambda_vars = {
        "PATH", "LANG", "TZ", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "_HANDLER", "PYTHONDONTWRITEBYTECODE",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "_X_AMZN_TRACE_ID", "TRACEPARENT", "PYTHONPATH",
    }  # fmt: skip
    user_vars = {"MY_SETTING", "TZ_USER"}
    assert set(env) - lambda_vars - user_vars == set()


def test_trace_id_is_per_invocation(node: NodeRunner, introspect: Any) -> None:
    inst = node.start(introspect)
    try:
        a = body(node.invoke(inst, {}, trace_id="Root=1-aaaa"))
        b = body(node.invoke(inst, {}, trace_id="Root=1-bbbb"))
        c = body(node.invoke(inst, {}))
    finally:
        node.stop(inst)
    assert a["env"]["_X_AMZN_TRACE_ID"] == "Root=1-aaaa"
    assert b["env"]["_X_AMZN_TRACE_ID"] == "Root=1-bbbb"
    assert c["env"].get("_X_AMZN_TRACE_ID", "") == ""
    assert a["aws_request_id"] != b["aws_request_id"]


def test_memory_size_env(node: NodeRunner) -> None:
    fn = node.load(
        {
            "app.py": "import os\ndef handler(e, c):\n    return [c.memory_limit_in_mb, os.environ['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']]\n"
        },
        memory_mb=256,
        version="7",
    )
    out = node.call(fn)
    assert body(out) == ["256", "256"]
    assert out.memory_mb == 256
    assert "Memory Size: 256 MB" in out.logs
    assert "Version: 7" in out.logs


# --------------------------------------------------------------------------------------------- results


def test_async_handler(node: NodeRunner) -> None:
    fn = node.load(
        {
            "app.py": """
            import asyncio
            async def handler(event, context):
                await asyncio.sleep(0)
                return {"async": True, "x": event["x"] * 2, "rid": context.aws_request_id}
            """
        }
    )
    inst = node.start(fn)
    try:
        assert body(node.invoke(inst, {"x": 21}, request_id="a1")) == {"async": True, "x": 42, "rid": "a1"}
        assert body(node.invoke(inst, {"x": 1}, request_id="a2")) == {"async": True, "x": 2, "rid": "a2"}
    finally:
        node.stop(inst)


RESULTS = """
from decimal import Decimal
def handler(event, context):
    kind = event["kind"]
    if kind == "decimal":
        return {"int": Decimal("3"), "frac": Decimal("1.5"), "list": [Decimal("10.00")]}
    if kind == "none":
        return None
    if kind == "str":
        return "plain string"
    if kind == "set":
        return {"bad": {1, 2}}
    if kind == "object":
        return object()
"""


@pytest.fixture(scope="module")
def results_fn(node: NodeRunner) -> Any:
    return node.load({"app.py": RESULTS})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("decimal", {"int": 3, "frac": 1.5, "list": [10]}),
        ("none", None),
        ("str", "plain string"),
    ],
)
def test_result_serialisation(node: NodeRunner, results_fn: Any, kind: str, expected: Any) -> None:
    out = node.call(results_fn, {"kind": kind})
    assert out.ok
    assert body(out) == expected


@pytest.mark.parametrize("kind", ["set", "object"])
def test_unserialisable_result_is_marshal_error(node: NodeRunner, results_fn: Any, kind: str) -> None:
    inst = node.start(results_fn)
    try:
        out = node.invoke(inst, {"kind": kind}, request_id="marshal-1")
        assert out.error_type == "Runtime.MarshalError"
        doc = body(out)
        assert doc["errorType"] == "Runtime.MarshalError"
        assert doc["errorMessage"].startswith("Unable to marshal response")
        assert doc["requestId"] == "marshal-1"
        assert "[ERROR] Runtime.MarshalError" in out.logs
        # the instance survives a marshal error
        assert node.invoke(inst, {"kind": "none"}).ok
    finally:
        node.stop(inst)


def test_module_init_runs_once_per_instance(node: NodeRunner) -> None:
    fn = node.load(
        {
            "app.py": """
            import os
            INITS = 0
            INITS += 1
            CALLS = 0
            def handler(event, context):
                global CALLS
                CALLS += 1
                return {"inits": INITS, "calls": CALLS, "pid": os.getpid()}
            """
        }
    )
    a, b = node.start(fn), node.start(fn)
    try:
        seen_a = [body(node.invoke(a)) for _ in range(3)]
        seen_b = [body(node.invoke(b)) for _ in range(2)]
    finally:
        node.stop(a)
        node.stop(b)
    assert [s["calls"] for s in seen_a] == [1, 2, 3]
    assert [s["calls"] for s in seen_b] == [1, 2]  # a new instance starts fresh
    assert {s["inits"] for s in seen_a + seen_b} == {1}


# ------------------------------------------------------------------------------------------------ logs

LOGGING = """
import logging, sys
print("init-print-line")
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    print("stdout-line", event["n"])
    sys.stderr.write("stderr-line %d\\n" % event["n"])
    logging.info("logging-line %d", event["n"])
    logger.warning("warning-line")
    context.log("context-log-line\\n")
    return "ok"
"""

REPORT_RE = re.compile(
    r"^REPORT RequestId: (?P<rid>\S+)\tDuration: (?P<dur>\d+\.\d{2}) ms\tBilled Duration: (?P<billed>\d+) ms\t"
    r"Memory Size: (?P<size>\d+) MB\tMax Memory Used: (?P<used>\d+) MB\t(?:Init Duration: (?P<init>\d+\.\d{2}) ms\t)?$"
)


@pytest.fixture(scope="module")
def log_outcomes(node: NodeRunner) -> list[Any]:
    fn = node.load({"app.py": LOGGING})
    inst = node.start(fn)
    try:
        return [node.invoke(inst, {"n": i}, request_id=f"log-req-{i}") for i in range(2)]
    finally:
        node.stop(inst)


def _between_start_and_end(logs: str, rid: str) -> list[str]:
    lines = logs.splitlines()
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    end = lines.index(f"END RequestId: {rid}")
    assert start < end
    return lines[start + 1 : end]


def test_log_lines_between_start_and_end(log_outcomes: list[Any]) -> None:
    for i, out in enumerate(log_outcomes):
        assert out.ok
        rid = f"log-req-{i}"
        inner = _between_start_and_end(out.logs, rid)
        text = "\n".join(inner)
        assert f"stdout-line {i}" in inner
        assert f"stderr-line {i}" in inner
        assert "context-log-line" in inner
        info = [ln for ln in inner if ln.endswith(f"logging-line {i}")]
        assert len(info) == 1
        level, ts, req, msg = info[0].split("\t")
        assert level == "[INFO]"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", ts)
        assert req == rid
        assert msg == f"logging-line {i}"
        assert "[WARNING]\t" in text and f"\t{rid}\twarning-line" in text
        # the last line is the REPORT, right after END
        lines = out.logs.splitlines()
        assert lines[-2] == f"END RequestId: {rid}"
        assert lines[-1].startswith(f"REPORT RequestId: {rid}\t")


def test_init_output_only_in_first_invocation(log_outcomes: list[Any]) -> None:
    first, second = log_outcomes
    assert "init-print-line" in first.logs
    assert first.logs.index("init-print-line") < first.logs.index("START RequestId:")
    assert "init-print-line" not in second.logs


def test_report_line(log_outcomes: list[Any], node: NodeRunner) -> None:
    for i, out in enumerate(log_outcomes):
        report = out.logs.splitlines()[-1]
        m = REPORT_RE.match(report)
        assert m, report
        assert m["rid"] == f"log-req-{i}"
        dur = float(m["dur"])
        billed = int(m["billed"])
        assert billed >= dur
        assert billed == max(1, math.ceil(out.duration_ms)) == out.billed_ms
        assert int(m["size"]) == 128 == out.memory_mb
        assert int(m["used"]) == out.max_memory_mb
        if node.node.caps.cgroups:
            assert 0 < out.max_memory_mb <= 128
        if i == 0:
            assert out.cold is True
            assert m["init"] is not None
            assert out.init_ms is not None and out.init_ms >= 0
            assert float(m["init"]) == pytest.approx(out.init_ms, abs=0.01)
        else:
            assert out.cold is False
            assert m["init"] is None
            assert out.init_ms is None
