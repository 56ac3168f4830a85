"""Errors and setup: one clear line for every user error, credentials precedence, ``--version``, a port in use."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli._cli import ACCESS_KEY, SECRET_KEY, Run, Server, free_port, ok, one_line_error


def test_no_server_is_one_clear_line(squall: Run, server: Server) -> None:
    env = {**server.env, "SQUALL_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    for args in (("functions", "ls"), ("invoke", "hello"), ("logs", "hello"), ("usage",)):
        one_line_error(squall(*args, env=env), "cannot reach Squall at http://127.0.0.1:", "is `squall up` running?")


def test_user_errors_are_one_line(squall: Run, server: Server, tmp_path: Path) -> None:
    one_line_error(squall("invoke", "does-not-exist"), "ResourceNotFoundException")
    one_line_error(squall("invoke", "hello", "--payload", "{not json"), "not valid JSON")
    one_line_error(squall("usage", "--since", "yesterday-ish"), "invalid --since")
    one_line_error(squall("invocations", "ls", "--limit", "0"), "--limit")
    one_line_error(squall("deploy", str(tmp_path / "missing")), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(squall("deploy", str(empty)), "--handler")
    one_line_error(squall("deploy", str(empty), "--handler", "app.handler", "--env", "=x"), "--env")
    env = {k: v for k, v in server.env.items() if k != "SQUALL_SECRET_ACCESS_KEY"}
    one_line_error(squall("functions", "ls", env=env), "SQUALL_SECRET_ACCESS_KEY")
    wrong = {**server.env, "SQUALL_SECRET_ACCESS_KEY": "not-the-secret"}
    one_line_error(squall("functions", "ls", env=wrong), "credentials")


def test_version(squall: Run) -> None:
    out = ok(squall("--version")).stdout.strip()
    assert out.startswith("squall ") and out.split()[1][0].isdigit()


def test_environment_credentials_win_over_the_credentials_file(
    squall: Run, server: Server, hello: str, tmp_path: Path
) -> None:
    """AWS's precedence: exported AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY beat a credentials file (which used to win
    and answer UnrecognizedClientException)."""
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "credentials.json").write_text(
        '{"admin": {"access_key_id": "AKSQSTALESTALESTALE1", "secret_access_key": "stale-secret-stale-secret-0000"}}'
    )
    env = {k: v for k, v in server.env.items() if not k.startswith("SQUALL_") or k == "SQUALL_ENDPOINT"}
    env |= {"SQUALL_DATA_DIR": str(stale), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    assert hello in ok(squall("functions", "ls", env=env)).stdout
    # without the environment's keys the file is used (and here it is stale: one clear line)
    no_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    one_line_error(squall("functions", "ls", env=no_env), "UnrecognizedClientException", "AWS_ACCESS_KEY_ID")


def test_port_in_use_is_one_line(squall: Run, server: Server, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]  # the running server holds it
    result = squall("up", "--port", port, "--data-dir", str(tmp_path / "other"), timeout=60)
    one_line_error(result, f"port {port} is in use; pass --port or stop the other server")
