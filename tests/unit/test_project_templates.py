"""SAM template and serverless.yml translation into the project model: intrinsics, Globals, policies, events, and
errors that cite the file and the original file's key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from squall.cli.project import ProjectError
from squall.cli.project_files import find_project_file, load_any_project

ENDPOINT = "http://127.0.0.1:9070"


def sam(tmp_path: Path, resources: str, extra: str = "") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "template.yaml"
    path.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"
        + textwrap.dedent(extra)
        + "Resources:\n"
        + textwrap.indent(textwrap.dedent(resources), "  ")
    )
    return path


FN = """\
Fn:
  Type: AWS::Serverless::Function
  Properties:
    CodeUri: src
    Handler: app.handler
"""


def error(path: Path) -> str:
    with pytest.raises(ProjectError) as exc_info:
        load_any_project(path, ENDPOINT)
    return exc_info.value.message


def test_globals_merge_and_intrinsics(tmp_path: Path) -> None:
    path = sam(
        tmp_path,
        FN
        + """\
    MemorySize: 512
    Layers: [arn:aws:lambda:us-east-1:000000000000:layer:own:1]
    Environment:
      Variables:
        OWN: !Sub "${AWS::Region}-${Q.QueueName}-${!Literal}"
        JOINED: !Join ["/", [!Ref Bucket, !GetAtt Q.Arn]]
Q:
  Type: AWS::SQS::Queue
  Properties: {FifoQueue: true, RedrivePolicy: {deadLetterTargetArn: !GetAtt D.Arn, maxReceiveCount: 3}}
D:
  Type: AWS::SQS::Queue
Bucket:
  Type: AWS::S3::Bucket
""",
        """\
Globals:
  Function:
    Timeout: 20
    MemorySize: 1024
    Layers: [arn:aws:lambda:us-east-1:000000000000:layer:global:1]
    Environment: {Variables: {GLOBAL: g, OWN: overridden}}
""",
    )
    project = load_any_project(path, ENDPOINT)
    fn = project.function("Fn")
    assert (fn.memory, fn.timeout) == (512, 20)
    assert fn.environment == {
        "GLOBAL": "g",
        "OWN": "us-east-1-Q.fifo-${Literal}",
        "JOINED": "bucket/arn:aws:sqs:us-east-1:000000000000:Q.fifo",
    }
    assert fn.layers == ("arn:aws:lambda:us-east-1:000000000000:layer:global:1",
                         "arn:aws:lambda:us-east-1:000000000000:layer:own:1")  # fmt: skip
    assert [b.name for b in project.buckets] == ["bucket"]
    q = next(q for q in project.queues if q.name == "Q.fifo")
    assert q.attributes["FifoQueue"] == "true"
    assert q.attributes["RedrivePolicy"] == '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:D",' \
        '"maxReceiveCount":3}'  # fmt: skip


def test_policies_become_iam_statements(tmp_path: Path) -> None:
    path = sam(
        tmp_path,
        FN
        + """\
    Policies:
      - AWSLambdaBasicExecutionRole
      - S3CrudPolicy: {BucketName: !Ref B}
      - SQSPollerPolicy: {QueueName: jobs}
      - Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: "s3:ListBucket", Resource: "*"}
B:
  Type: AWS::S3::Bucket
  Properties: {BucketName: my-bucket}
""",
    )
    policies = load_any_project(path, ENDPOINT).function("Fn").policies
    assert policies[0]["Resource"] == ["arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"]
    assert "s3:DeleteObject" in policies[0]["Action"]
    assert policies[1]["Resource"] == ["arn:aws:sqs:us-east-1:000000000000:jobs"]
    assert "sqs:ReceiveMessage" in policies[1]["Action"]
    assert policies[2] == {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}
    assert len(policies) == 3  # the basic execution role adds nothing Squall needs


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (FN + "    MemorySize: 64\n", "template.yaml: Resources.Fn.Properties.MemorySize: must be an integer"),
        (FN + "    Runtime: nodejs20.x\n", "Resources.Fn.Properties.Runtime: Squall runs Python functions"),
        (FN.replace("CodeUri: src", "CodeUri: nope"), "Resources.Fn.Properties.CodeUri: directory 'nope' does not"),
        (
            FN + "    Environment: {Variables: {AWS_REGION: x}}\n",
            "Properties.Environment.Variables.AWS_REGION: is reserved",
        ),
        (
            FN + "    Events:\n      E: {Type: Api, Properties: {Path: nope, Method: get}}\n",
            "Resources.Fn.Properties.Events.E.Properties.Path: must start with '/'",
        ),
        (
            FN + "    Events:\n      E: {Type: Schedule, Properties: {Schedule: 'rate(5 minute)'}}\n",
            "Resources.Fn.Properties.Events.E.Properties.Schedule: use the plural unit",
        ),
        (
            FN + "    Events:\n      E: {Type: S3, Properties: {Bucket: elsewhere}}\n",
            "Resources.Fn.Properties.Events.E.Properties.Bucket: must be a !Ref of an AWS::S3::Bucket",
        ),
        (FN + "    Environment: {Variables: {X: !Ref Missing}}\n", "Variables.X.Ref: Ref to 'Missing': no parameter"),
        (FN + "    Environment: {Variables: {X: !If [c, a, b]}}\n", "Fn::If is not supported by squall deploy"),
        (
            FN + "    Policies: [DynamoDBCrudPolicy: {TableName: t}]\n",
            "Policies[0].DynamoDBCrudPolicy: policy template",
        ),
        (FN + "    Policies: [SomeManagedPolicy]\n", "managed policy 'SomeManagedPolicy' is not known"),
        (FN + "    InlineCode: x\n", "Resources.Fn.Properties.InlineCode: not supported"),
    ],
)
def test_sam_errors_cite_the_template_key(tmp_path: Path, resources: str, expected: str) -> None:
    message = error(sam(tmp_path, resources))
    assert message.startswith(str(tmp_path / "template.yaml") + ": ")
    assert expected in message, message


def test_sam_layers_are_recorded(tmp_path: Path) -> None:
    (tmp_path / "layer").mkdir()
    path = sam(tmp_path, FN + "    Layers: [!Ref L]\nL:\n  Type: AWS::Serverless::LayerVersion\n"
                              "  Properties: {ContentUri: layer, CompatibleRuntimes: [python3.11]}\n")  # fmt: skip
    project = load_any_project(path, ENDPOINT)
    (layer,) = project.layers
    assert (layer.name, layer.content, layer.compatible_runtimes) == ("L", (tmp_path / "layer").resolve(),
                                                                       ("python3.11",))  # fmt: skip
    assert project.function("Fn").layers == ("arn:aws:lambda:us-east-1:000000000000:layer:L",)  # versioned by deploy


def test_serverless_variables_events_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUALL_TEST_GREETING", "hello")
    (tmp_path / "handler.py").write_text("def main(e, c):\n    return 1\n")
    path = tmp_path / "serverless.yml"
    path.write_text(
        textwrap.dedent("""\
        service: svc
        provider:
          name: aws
          runtime: python3.12
          environment:
            GREETING: ${env:SQUALL_TEST_GREETING}
            MISSING: ${env:SQUALL_TEST_NOT_SET, 'fallback'}
            STAGE: ${opt:stage, 'prod'}
        functions:
          api:
            handler: handler.main
            memorySize: ${self:custom.mem}
            events:
              - httpApi: '*'
              - http: {method: post, path: items}
              - schedule: {rate: ["rate(2 hours)"], input: {a: 1}}
        custom:
          mem: 384
    """)
    )
    assert find_project_file(tmp_path) == path
    fn = load_any_project(path, ENDPOINT).function("api")
    assert fn.memory == 384 and fn.runtime == "python3.12" and fn.code == tmp_path.resolve()
    assert fn.environment == {"GREETING": "hello", "MISSING": "fallback", "STAGE": "prod"}
    assert [e.config for e in fn.events] == [
        {"method": "ANY", "path": "/{proxy+}"},
        {"method": "POST", "path": "/items", "payload_format": "1.0"},
        {"expression": "rate(2 hours)", "enabled": True, "input": {"a": 1}},
    ]
    path.write_text(path.read_text().replace("memorySize: ${self:custom.mem}", "memorySize: 1"))
    assert "serverless.yml: functions.api.memorySize: must be an integer between 128" in error(path)
    path.write_text(path.read_text().replace("- httpApi: '*'", "- sns: topic"))
    assert "functions.api.events[0] (event type sns)" in error(path)
