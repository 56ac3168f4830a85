"""``squall invoke``, then what it leaves: ``squall invocations ls``, ``squall usage`` and the output modes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli._cli import Run, Server, eventually, ok


def test_invoke_sync_prints_the_response(squall: Run, hello: str) -> None:
    result = ok(squall("invoke", hello, "--payload", '{"name": "Ada"}'))
    assert '"hello": "Ada"' in result.stdout


def test_invoke_payload_from_stdin_and_file_with_log(squall: Run, hello: str, tmp_path: Path) -> None:
    result = ok(squall("invoke", hello, "-", stdin='{"name": "stdin", "marker": "m-stdin"}'))
    assert '"hello": "stdin"' in result.stdout
    payload = tmp_path / "event.json"
    payload.write_text('{"name": "file", "marker": "m-tail"}')
    result = ok(squall("invoke", hello, "--payload-file", str(payload), "--log"))
    assert '"hello": "file"' in result.stdout
    assert "marker: m-tail" in result.stderr and "REPORT RequestId" in result.stderr


def test_invoke_async_prints_the_request_id(squall: Run, hello: str) -> None:
    result = ok(squall("invoke", hello, "--async", "--payload", '{"marker": "async"}'))
    assert "202" in result.stdout
    request_id = result.stdout.strip().split()[-1]
    assert len(request_id) == 36

    def recorded() -> bool:
        return request_id in ok(squall("invocations", "ls", "--function", hello, "--limit", "100")).stdout

    eventually(recorded, what=f"the async invocation {request_id} to be recorded")


def test_invoke_handler_error_exits_1_with_the_error_type(squall: Run, hello: str) -> None:
    result = squall("invoke", hello, "--payload", '{"fail": "kaput"}')
    assert result.returncode == 1, result
    assert "ValueError" in result.stderr and "boom: kaput" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""


def test_invocations_ls_shows_errors(squall: Run, hello: str) -> None:
    ok(squall("invoke", hello, "--payload", '{"marker": "rec"}'))
    squall("invoke", hello, "--payload", '{"fail": "listed"}')

    def listed() -> bool:
        out = ok(squall("invocations", "ls", "--function", hello, "--status", "error")).stdout
        return "ValueError" in out

    eventually(listed, what="the failed invocation to be recorded")
    out = ok(squall("invocations", "ls", "--limit", "5")).stdout
    assert hello in out and "ms" in out and "MB" in out


def test_usage_shows_functions_cost_and_break_even(squall: Run, hello: str) -> None:
    ok(squall("invoke", hello))

    def counted() -> bool:
        return hello in ok(squall("usage", "--since", "1h")).stdout

    eventually(counted, what="usage to include the function")
    out = ok(squall("usage", "--since", "24h", "--until", "now")).stdout
    assert "$" in out and "GB-s" in out
    assert "always-on 256 MB server costs" in out and "break-even at" in out
    assert "serverless is cheaper" in out


def test_output_modes(squall: Run, server: Server, hello: str) -> None:

    functions = json.loads(ok(squall("functions", "ls", "--output", "json")).stdout)
    row = next(f for f in functions if f["FunctionName"] == hello)
    assert row["MemorySize"] == 256 and row["ReservedConcurrentExecutions"] is None
    records = json.loads(ok(squall("invocations", "ls", "--limit", "3", "-o", "json")).stdout)
    assert records and {"request_id", "function", "duration_ms"} <= set(records[0])
    usage = json.loads(ok(squall("usage", "-o", "json")).stdout)
    assert "functions" in usage and "totals" in usage
    text = ok(squall("invocations", "ls", "--limit", "3", "-o", "text")).stdout.splitlines()
    assert text[0].split("\t")[:2] == ["time", "function"] and all(line.count("\t") == 9 for line in text)
    # a table in 60 columns: every line fits, the least important columns are left out and named
    narrow = {**server.env, "COLUMNS": "60"}
    table = ok(squall("invocations", "ls", "--limit", "3", "-o", "table", env=narrow)).stdout
    assert all(len(line) <= 60 for line in table.splitlines()), table
    assert "left out to fit 60 columns" in table and hello in table
    shown = json.loads(ok(squall("functions", "show", hello, "-o", "json")).stdout)
    assert shown["Configuration"]["FunctionName"] == hello
    logs = ok(squall("logs", hello, "-o", "json")).stdout.splitlines()
    assert logs and all("text" in json.loads(line) for line in logs)
