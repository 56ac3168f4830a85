"""``squall deploy`` from a directory and from a project (squall.yaml), ``squall functions``: what a user sees."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli._cli import ACCESS_KEY, SECRET_KEY, Run, Server, function_dir, ok, one_line_error


def test_deploy_directory_then_redeploy_is_unchanged(squall: Run, hello: str, tmp_path: Path) -> None:
    shown = ok(squall("functions", "show", hello)).stdout
    assert "app.handler" in shown and "256 MB" in shown and "GREETING=hi" in shown
    # lambda_function.py is the other guess; a second deploy of the same code changes nothing
    d = function_dir(tmp_path, "guess", "def lambda_handler(event, context):\n    return 7\n", "lambda_function.py")
    assert "created" in ok(squall("deploy", str(d))).stdout
    again = ok(squall("deploy", str(d)))
    assert "unchanged" in again.stdout
    assert ok(squall("invoke", "guess")).stdout.strip() == "7"
    assert "lambda_function.lambda_handler" in ok(squall("functions", "show", "guess")).stdout


def test_deploy_project_with_two_functions(squall: Run, tmp_path: Path) -> None:
    function_dir(
        tmp_path, "alpha", "import os\ndef handler(e, c):\n    return {'fn': 'alpha', 'color': os.environ['COLOR']}\n"
    )
    function_dir(tmp_path, "beta", "def handler(e, c):\n    return {'fn': 'beta'}\n")
    (tmp_path / "squall.yaml").write_text(
        "functions:\n"
        "  alpha:\n"
        "    handler: app.handler\n"
        "    code: ./alpha\n"
        "    memory: 192\n"
        "    environment: {COLOR: blue}\n"
        "    reserved_concurrency: 3\n"
        "  beta:\n"
        "    handler: app.handler\n"
        "    code: ./beta\n"
        "    events:\n"
        "      - schedule: {expression: rate(5 minutes)}\n"
        "      - http: {method: GET, path: /beta}\n"
    )
    result = ok(squall("deploy", str(tmp_path)))
    assert "alpha" in result.stdout and "beta" in result.stdout
    # the triggers are applied, and the summary says which
    assert "rate(5 minutes)" in result.stdout and "GET /beta" in result.stdout
    assert '"color": "blue"' in ok(squall("invoke", "alpha")).stdout
    assert '"fn": "beta"' in ok(squall("invoke", "beta")).stdout
    listing = ok(squall("functions", "ls")).stdout  # piped: a header line, then tab-separated rows
    header, *rows = listing.splitlines()
    assert header.split("\t") == ["name", "runtime", "memory", "timeout", "last modified", "reserved"]
    alpha_row = next(row.split("\t") for row in rows if row.startswith("alpha\t"))
    assert alpha_row[2] == "192 MB" and alpha_row[5] == "3"
    # the file itself works too, and an unchanged project redeploys as unchanged
    again = ok(squall("deploy", str(tmp_path / "squall.yaml")))
    assert again.stdout.count("unchanged") == 2


READER = """
import boto3
from botocore.config import Config

def handler(event, context):
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
    out = {}
    for key in ("in/a", "out/b"):
        try:
            out[key] = s3.get_object(Bucket="kept", Key=key)["Body"].read().decode()
        except Exception as e:
            out[key] = e.response["Error"]["Code"]
    return out
"""


def test_deploy_turns_policies_into_the_functions_role(squall: Run, server: Server, tmp_path: Path) -> None:

    import boto3

    s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY)  # fmt: skip
    s3.create_bucket(Bucket="kept")
    for key in ("in/a", "out/b"):
        s3.put_object(Bucket="kept", Key=key, Body=key.encode())
    function_dir(tmp_path, "keeper", READER)
    project = tmp_path / "squall.yaml"
    project.write_text(
        "functions:\n  keeper:\n    handler: app.handler\n    code: ./keeper\n    timeout: 30\n"
        "    policies:\n      - {s3: kept/in/*, actions: [read]}\n"
    )
    result = ok(squall("deploy", str(project)))
    assert "squall-keeper-role: 1 statement" in result.stdout
    assert json.loads(ok(squall("invoke", "keeper")).stdout) == {"in/a": "in/a", "out/b": "AccessDenied"}
    project.write_text(project.read_text() + "      - {s3: kept/out/*, actions: [read]}\n")
    assert "squall-keeper-role: 2 statements" in ok(squall("deploy", str(project))).stdout
    assert json.loads(ok(squall("invoke", "keeper")).stdout) == {"in/a": "in/a", "out/b": "out/b"}
    iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY)  # fmt: skip
    assert iam.list_role_policies(RoleName="squall-keeper-role")["PolicyNames"] == ["squall-policies"]
    project.write_text(project.read_text() + "      - {s3: kept, actions: [reed]}\n")
    one_line_error(squall("deploy", str(project)), "functions.keeper.policies[2].actions", "unknown s3 action")


def test_deploy_project_errors_cite_the_key(squall: Run, tmp_path: Path) -> None:
    (tmp_path / "squall.yaml").write_text("functions:\n  bad:\n    handler: app.handler\n    memory: 64\n")
    one_line_error(squall("deploy", str(tmp_path / "squall.yaml")), "functions.bad.memory")


def test_functions_ls_show_rm(squall: Run, tmp_path: Path) -> None:
    d = function_dir(tmp_path, "doomed")
    ok(squall("deploy", str(d), "--name", "doomed", "--timeout", "7"))
    assert "doomed" in ok(squall("functions", "ls")).stdout
    shown = ok(squall("functions", "show", "doomed")).stdout
    assert "7 s" in shown and "arn:aws:lambda:us-east-1:000000000000:function:doomed" in shown
    assert "deleted" in ok(squall("functions", "rm", "doomed")).stdout
    assert "doomed" not in ok(squall("functions", "ls")).stdout
    one_line_error(squall("invoke", "doomed"), "ResourceNotFoundException")
    one_line_error(squall("functions", "rm", "doomed"), "ResourceNotFoundException")


def test_deploy_prints_one_line_per_phase_when_piped(squall: Run, tmp_path: Path) -> None:
    d = function_dir(tmp_path, "phased")
    result = ok(squall("deploy", str(d)))
    lines = result.stderr.splitlines()
    assert any(line.startswith("phased: zipped ") for line in lines), result.stderr
    assert any(line.startswith("phased: uploading ") and "(creating the function)" in line for line in lines)
    assert "\x1b[" not in result.stderr  # no terminal control codes in a pipe
