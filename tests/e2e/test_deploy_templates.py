"""End to end: ``squall deploy`` of a SAM template and of a serverless.yml (tests/e2e/templates/) against a real
``squall up``, every event type of each firing: the HTTP routes answer, the schedules exist as declared, an S3 upload
invokes the function, an SQS message is consumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, eventually, signed_get

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    proc = SquallProcess(tmp_path_factory.mktemp("templates") / "data").start()
    yield proc
    assert proc.stop() == 0


def deploy(squall: SquallProcess, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SQUALL_ACCESS_KEY_ID": KEY_ID, "SQUALL_SECRET_ACCESS_KEY": SECRET,
           "SQUALL_ENDPOINT": squall.url, "SQUALL_DATA_DIR": str(squall.data_dir)}  # fmt: skip
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "deploy", str(path)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def events(squall: SquallProcess, function: str) -> list[dict[str, Any]]:
    status, out = signed_get(squall.url, f"/_squall/api/logs?function={function}&q=EVENT&limit=1000")
    assert status == 200, out
    found = []
    for entry in out["lines"]:
        for line in entry["text"].splitlines():
            if "EVENT " in line:
                found.append(json.loads(line[line.index("EVENT ") + 6 :]))
    return found


def schedules(squall: SquallProcess, function: str) -> list[dict[str, Any]]:
    status, out = signed_get(squall.url, f"/_squall/api/schedules/{function}")
    assert status == 200, out
    return list(out["schedules"])


def check_triggers(
    squall: SquallProcess, *, http: list[tuple[str, str, str]], worker: str, bucket: str, queue: str
) -> None:
    for method, path, function in http:
        r = httpx.request(method, squall.url + path, content=b"{}", timeout=30)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == {"fn": function}
    s3, sqs = squall.client("s3"), squall.client("sqs")
    s3.put_object(Bucket=bucket, Key="in/photo.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="elsewhere/skipped.txt", Body=b"x")  # outside the prefix filter
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="job-1")

    def keys() -> set[str]:
        return {r["s3"]["object"]["key"] for e in events(squall, worker) for r in e.get("Records", []) if "s3" in r}

    def bodies() -> set[str]:
        return {r["body"] for e in events(squall, worker) for r in e.get("Records", []) if "body" in r}

    eventually(lambda: "in/photo.txt" in keys(), timeout_s=60, what="the S3 upload to invoke the worker")
    eventually(lambda: "job-1" in bodies(), timeout_s=60, what="the SQS message to be consumed")
    assert "elsewhere/skipped.txt" not in keys()

    def drained() -> bool:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"

    eventually(drained, timeout_s=60, what="the queue to be drained")


def test_sam_template(squall: SquallProcess, tmp_path: Path) -> None:
    project = tmp_path / "sam"
    shutil.copytree(TEMPLATES / "sam", project)
    result = deploy(squall, project)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Outputs: not evaluated" in result.stderr  # what is left out is said, not dropped
    lam = squall.client("lambda")
    api = lam.get_function_configuration(FunctionName="sam-api")
    assert (api["MemorySize"], api["Timeout"], api["Runtime"]) == (256, 10, "python3.11")  # Globals.Function
    env = api["Environment"]["Variables"]
    assert env["STAGE"] == "test" and env["BUCKET"] == "photos-test"  # !Ref of a parameter, of a bucket
    assert env["QUEUE_ARN"] == "arn:aws:sqs:us-east-1:000000000000:Jobs"  # !GetAtt
    assert env["QUEUE_URL"].endswith("/000000000000/Jobs")
    visibility = squall.client("sqs").get_queue_attributes(
        QueueUrl=env["QUEUE_URL"], AttributeNames=["VisibilityTimeout"]
    )["Attributes"]["VisibilityTimeout"]
    assert visibility == "30"
    by_expression = {s["expression"]: s for s in schedules(squall, "Worker")}
    assert by_expression["rate(1 minute)"]["enabled"] is True
    assert by_expression["rate(1 minute)"]["input"] == {"tick": 1}
    assert by_expression["cron(0 12 * * ? *)"]["enabled"] is False  # ScheduleV2, State: DISABLED
    check_triggers(
        squall,
        http=[("GET", "/sam/rest/42", "sam-api"), ("POST", "/sam/http", "sam-api")],
        worker="Worker",
        bucket="photos-test",
        queue="Jobs",
    )


def test_serverless_yml(squall: SquallProcess, tmp_path: Path) -> None:
    project = tmp_path / "sls"
    shutil.copytree(TEMPLATES / "serverless", project)
    result = deploy(squall, project / "serverless.yml")
    assert result.returncode == 0, result.stderr
    assert "plugins: ignored by Squall" in result.stderr
    web = squall.client("lambda").get_function_configuration(FunctionName="web")
    assert (web["MemorySize"], web["Timeout"]) == (192, 10)
    assert web["Environment"]["Variables"] == {"STAGE": "dev", "SERVICE": "slsdemo"}
    by_expression = {s["expression"]: s for s in schedules(squall, "sls-worker")}
    assert by_expression["rate(1 minute)"]["enabled"] is True
    assert by_expression["cron(*/5 * * * ? *)"]["enabled"] is False
    assert by_expression["cron(*/5 * * * ? *)"]["input"] == {"k": "v"}
    check_triggers(
        squall,
        http=[("GET", "/sls/rest/7", "web"), ("POST", "/sls/http", "web")],
        worker="sls-worker",
        bucket="sls-uploads",
        queue="slsdemo-inbox",
    )


def test_unsupported_types_are_listed_in_one_error(squall: SquallProcess, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Table:\n    Type: AWS::DynamoDB::Table\n"
        "  Topic:\n    Type: AWS::SNS::Topic\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src\n      Handler: app.handler\n"
        "      Events:\n        Stream:\n          Type: DynamoDB\n          Properties: {Stream: x}\n"
    )
    result = deploy(squall, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"squall: error: {tmp_path / 'template.yaml'}: Resources: not supported by Squall")
    for needle in ("Resources.Table (AWS::DynamoDB::Table)", "Resources.Topic (AWS::SNS::Topic)",
                   "Resources.Fn.Properties.Events.Stream (event type DynamoDB)"):  # fmt: skip
        assert needle in line


LAYERED = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties: {LayerName: shared-lib, ContentUri: layer/, CompatibleRuntimes: [python3.11]}
  Layered:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.11
      Layers: [!Ref Shared]
"""


def test_sam_layer_is_published_before_the_function(squall: SquallProcess, tmp_path: Path) -> None:
    """With a server that has layers: the layer is published, the function runs with it, a redeploy publishes no
    new version.  With a server without them: one line that says so (nothing half-deployed)."""
    (tmp_path / "layer" / "python").mkdir(parents=True)
    (tmp_path / "layer" / "python" / "greeting.py").write_text("WORD = 'from the layer'\n")
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("import greeting\n\ndef handler(e, c):\n    return greeting.WORD\n")
    (tmp_path / "template.yaml").write_text(LAYERED)
    lam = squall.client("lambda")
    try:
        lam.list_layers()
        has_layers = True
    except lam.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        has_layers = False
    result = deploy(squall, tmp_path)
    assert "Traceback" not in result.stderr
    if not has_layers:
        assert result.returncode == 1
        *progress, line = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert progress == ["layer shared-lib: publishing " + str(tmp_path / "layer")]  # the phase that was running
        assert line.startswith("squall: error: ") and "Resources.Shared.Properties: the Squall server at" in line
        assert "does not implement layers" in line
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function(FunctionName="Layered")
        return
    assert result.returncode == 0, result.stderr
    config = lam.get_function_configuration(FunctionName="Layered")
    (layer,) = config["Layers"]
    assert layer["Arn"].endswith(":layer:shared-lib:1")
    out = lam.invoke(FunctionName="Layered")
    assert json.loads(out["Payload"].read()) == "from the layer"
    again = deploy(squall, tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(lam.list_layer_versions(LayerName="shared-lib")["LayerVersions"]) == 1
