"""The IAM policy evaluator, the request -> action/resource mapping and the squall.yaml grants, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from squall.iam.actions import Check, invoke_check, s3_checks, sqs_checks
from squall.iam.authorizer import Caller, decide
from squall.iam.grants import GrantError, expand_policies
from squall.iam.policy import Policy, PolicyError, evaluate, parse_policy


def pol(*statements: dict[str, Any], resource_policy: bool = False) -> Policy:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, resource_policy=resource_policy)


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


GET = "s3:GetObject"
OBJ = "arn:aws:s3:::photos/originals/a.jpg"

EVALUATION = [
    # (statements, action, resource, context, expected)
    ([], GET, OBJ, {}, "implicit"),
    ([allow(GET, OBJ)], GET, OBJ, {}, "allow"),
    ([allow("s3:getobject", OBJ)], GET, OBJ, {}, "allow"),  # actions: case-insensitive
    ([allow(GET, OBJ.upper())], GET, OBJ, {}, "implicit"),  # resources: case-sensitive
    ([allow("s3:Get*", "arn:aws:s3:::photos/*")], GET, OBJ, {}, "allow"),
    ([allow("s3:*", "arn:aws:s3:::photos/originals/*")], GET, "arn:aws:s3:::photos/thumbnails/a.jpg", {}, "implicit"),
    ([allow("s3:Get?bject", OBJ)], GET, OBJ, {}, "allow"),
    ([allow("s3:Get?bject", OBJ)], "s3:GetObjectAcl", OBJ, {}, "implicit"),
    ([allow("*", "*")], "sqs:SendMessage", "arn:aws:sqs:us-east-1:000000000000:jobs", {}, "allow"),
    ([allow("sqs:SendMessage", "arn:aws:sqs:*:*:jobs")], "sqs:SendMessage",
     "arn:aws:sqs:us-east-1:000000000000:jobs", {}, "allow"),
    ([allow("sqs:SendMessage", "arn:aws:sqs:*:*:jobs")], "sqs:SendMessage",
     "arn:aws:sqs:us-east-1:000000000000:jobs-dlq", {}, "implicit"),
    ([allow("s3:*", "*"), deny("s3:PutObject", "*")], "s3:PutObject", OBJ, {}, "deny"),  # explicit deny wins
    ([deny("s3:PutObject", "*"), allow("s3:*", "*")], GET, OBJ, {}, "allow"),
    ([{"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}], GET, OBJ, {}, "allow"),
    ([{"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}], "s3:DeleteObject", OBJ, {}, "implicit"),
    ([{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}], GET,
     "arn:aws:s3:::secret/k", {}, "implicit"),
    ([{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}], GET, OBJ, {}, "allow"),
    ([allow("s3:*", "*"), {"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*"}], "s3:PutObject", OBJ, {},
     "deny"),
    # conditions
    ([allow("s3:ListBucket", "arn:aws:s3:::photos", Condition={"StringLike": {"s3:prefix": "originals/*"}})],
     "s3:ListBucket", "arn:aws:s3:::photos", {"s3:prefix": "originals/x"}, "allow"),
    ([allow("s3:ListBucket", "arn:aws:s3:::photos", Condition={"StringLike": {"s3:prefix": "originals/*"}})],
     "s3:ListBucket", "arn:aws:s3:::photos", {"s3:prefix": "other/"}, "implicit"),
    ([allow("s3:ListBucket", "arn:aws:s3:::photos", Condition={"StringLike": {"s3:prefix": "originals/*"}})],
     "s3:ListBucket", "arn:aws:s3:::photos", {}, "implicit"),  # key absent: a positive operator is false
    ([allow(GET, "*", Condition={"StringNotEquals": {"aws:PrincipalAccount": "111111111111"}})], GET, OBJ, {}, "allow"),
    ([allow(GET, "*", Condition={"StringEqualsIfExists": {"s3:prefix": "x"}})], GET, OBJ, {}, "allow"),
    ([allow(GET, "*", Condition={"Null": {"s3:prefix": "true"}})], GET, OBJ, {}, "allow"),
    ([allow(GET, "*", Condition={"Null": {"s3:prefix": "false"}})], GET, OBJ, {}, "implicit"),
    ([allow(GET, "*", Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/app-*"}})], GET, OBJ,
     {"aws:principalarn": "arn:aws:iam::000000000000:role/app-reader"}, "allow"),
    ([allow(GET, "*", Condition={"StringEquals": {"AWS:PrincipalAccount": ["1", "000000000000"]}})], GET, OBJ,
     {"aws:principalaccount": "000000000000"}, "allow"),  # keys: case-insensitive; values: any of
    ([allow(GET, "*", Condition={"StringEquals": {"aws:PrincipalAccount": "000000000000"},
                                 "StringLike": {"s3:prefix": "a*"}})], GET, OBJ,
     {"aws:principalaccount": "000000000000", "s3:prefix": "b"}, "implicit"),  # every condition must hold
    # unsupported operators never grant, and never lift a deny
    ([allow(GET, "*", Condition={"NumericLessThan": {"s3:max-keys": "10"}})], GET, OBJ, {"s3:max-keys": "5"},
     "implicit"),
    ([allow(GET, "*"), deny(GET, "*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})], GET, OBJ, {},
     "deny"),
    ([allow(GET, "*"), deny(GET, "*", Condition={"StringEquals": {"aws:PrincipalAccount": "1"}})], GET, OBJ,
     {"aws:principalaccount": "000000000000"}, "allow"),
    # policy variables: literal in an Allow, match-all in a Deny
    ([allow(GET, "arn:aws:s3:::photos/${aws:username}/*")], GET, OBJ, {}, "implicit"),
    ([allow(GET, "*"), deny(GET, "arn:aws:s3:::photos/${aws:username}/*")], GET, OBJ, {}, "deny"),
    # Lambda ARNs: an unqualified ARN does not cover versions or aliases; name* does
    ([allow("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:000000000000:function:f")], "lambda:InvokeFunction",
     "arn:aws:lambda:us-east-1:000000000000:function:f:live", {}, "implicit"),
    ([allow("lambda:InvokeFunction", "arn:aws:lambda:*:*:function:f*")], "lambda:InvokeFunction",
     "arn:aws:lambda:us-east-1:000000000000:function:f:live", {}, "allow"),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "action", "resource", "context", "expected"), EVALUATION)
def test_evaluate(
    statements: list[dict[str, Any]], action: str, resource: str, context: dict[str, str], expected: str
) -> None:
    policies = [pol(*statements)] if statements else []
    assert evaluate(policies, action, resource, context) == expected


MALFORMED = [
    ("not json", "not valid JSON"),
    ({"Statement": [{"Effect": "Permit", "Action": "s3:*", "Resource": "*"}]}, "Effect"),
    ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "exactly one of Action and NotAction"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}, "Resource"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3", "Resource": "*"}]}, "service:Action"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"}]}, "principal"),
    ({"Version": "2020-01-01", "Statement": []}, "version"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Extra": 1}]}, "unknown"),
    ({}, "no Statement"),
]


@pytest.mark.parametrize(("document", "fragment"), MALFORMED)
def test_malformed_policies_are_refused_with_a_reason(document: Any, fragment: str) -> None:
    with pytest.raises(PolicyError, match=f"(?i){fragment}"):
        parse_policy(document)


S3 = [
    # (method, bucket, key, query, headers, extra, expected checks)
    ("GET", "", "", {}, {}, {}, [("s3:ListAllMyBuckets", "arn:aws:s3:::*")]),
    ("GET", "b", "k/1", {}, {}, {}, [("s3:GetObject", "arn:aws:s3:::b/k/1")]),
    ("HEAD", "b", "k", {}, {}, {}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
    ("PUT", "b", "k", {}, {}, {}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("DELETE", "b", "k", {}, {}, {}, [("s3:DeleteObject", "arn:aws:s3:::b/k")]),
    ("POST", "b", "k", {"uploads": ""}, {}, {}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, {}, {}, [("s3:PutObject", "arn:aws:s3:::b/k")]),
    ("GET", "b", "k", {"uploadId": "u"}, {}, {}, [("s3:ListMultipartUploadParts", "arn:aws:s3:::b/k")]),
    ("DELETE", "b", "k", {"uploadId": "u"}, {}, {}, [("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")]),
    ("PUT", "b", "k", {}, {"x-amz-copy-source": "/src/s"}, {"copy_source": ("src", "s")},
     [("s3:PutObject", "arn:aws:s3:::b/k"), ("s3:GetObject", "arn:aws:s3:::src/s")]),
    ("GET", "b", "", {"list-type": "2", "prefix": "in/"}, {}, {}, [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("HEAD", "b", "", {}, {}, {}, [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("PUT", "b", "", {}, {}, {}, [("s3:CreateBucket", "arn:aws:s3:::b")]),
    ("DELETE", "b", "", {}, {}, {}, [("s3:DeleteBucket", "arn:aws:s3:::b")]),
    ("GET", "b", "", {"location": ""}, {}, {}, [("s3:GetBucketLocation", "arn:aws:s3:::b")]),
    ("PUT", "b", "", {"notification": ""}, {}, {}, [("s3:PutBucketNotification", "arn:aws:s3:::b")]),
    ("GET", "b", "", {"notification": ""}, {}, {}, [("s3:GetBucketNotification", "arn:aws:s3:::b")]),
    ("GET", "b", "", {"uploads": ""}, {}, {}, [("s3:ListBucketMultipartUploads", "arn:aws:s3:::b")]),
    ("POST", "b", "", {"delete": ""}, {}, {"delete_keys": ["x", "y/z"]},
     [("s3:DeleteObject", "arn:aws:s3:::b/x"), ("s3:DeleteObject", "arn:aws:s3:::b/y/z")]),
    ("GET", "b", "k", {"tagging": ""}, {}, {}, [("s3:GetObjectTagging", "arn:aws:s3:::b/k")]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers", "extra", "expected"), S3)
def test_s3_actions(
    method: str, bucket: str, key: str, query: dict[str, str], headers: dict[str, str], extra: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:  # fmt: skip
    checks = s3_checks(method, bucket, key, query, headers, **extra)
    assert [(c.action, c.resource) for c in checks] == expected


def test_list_bucket_carries_its_condition_keys() -> None:
    (check,) = s3_checks("GET", "b", "", {"prefix": "in/", "delimiter": "/"}, {})
    assert check.context == {"s3:prefix": "in/", "s3:delimiter": "/"}


QUEUE = "arn:aws:sqs:us-east-1:000000000000:jobs"
SQS = [
    ("SendMessage", {"QueueUrl": "http://h:9/000000000000/jobs"}, None, [("sqs:SendMessage", QUEUE)]),
    ("SendMessageBatch", {"QueueUrl": "http://h/000000000000/jobs"}, None, [("sqs:SendMessage", QUEUE)]),
    ("DeleteMessageBatch", {}, "/000000000000/jobs", [("sqs:DeleteMessage", QUEUE)]),
    ("ReceiveMessage", {"QueueUrl": "http://h/000000000000/jobs"}, None, [("sqs:ReceiveMessage", QUEUE)]),
    ("GetQueueUrl", {"QueueName": "jobs"}, None, [("sqs:GetQueueUrl", QUEUE)]),
    ("CreateQueue", {"QueueName": "jobs"}, None, [("sqs:CreateQueue", QUEUE)]),
    ("ListQueues", {}, None, [("sqs:ListQueues", "*")]),
    ("SendMessage", {"QueueUrl": "http://h/111111111111/jobs"}, None,
     [("sqs:SendMessage", "arn:aws:sqs:us-east-1:111111111111:jobs")]),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "params", "path", "expected"), SQS)
def test_sqs_actions(operation: str, params: dict[str, Any], path: str | None, expected: list[Any]) -> None:
    checks = sqs_checks(operation, params, path, "us-east-1", "000000000000")
    assert [(c.action, c.resource) for c in checks] == expected


def test_invoke_resource_is_qualified_when_the_request_is() -> None:
    assert invoke_check("us-east-1", "0", "f", None).resource == "arn:aws:lambda:us-east-1:0:function:f"
    assert invoke_check("us-east-1", "0", "f", "live").resource == "arn:aws:lambda:us-east-1:0:function:f:live"


def caller(*statements: dict[str, Any], problem: str = "") -> Caller:
    return Caller(
        function="me", function_arn="arn:aws:lambda:us-east-1:000000000000:function:me", account="000000000000",
        role_arn="arn:aws:iam::000000000000:role/r", session_arn="arn:aws:sts::000000000000:assumed-role/r/me",
        policies=(pol(*statements),) if statements else (), problem=problem,
    )  # fmt: skip


TARGET = "arn:aws:lambda:us-east-1:000000000000:function:t"


def resource_policy(principal: Any, effect: str = "Allow") -> Policy:
    stmt = {"Sid": "s", "Effect": effect, "Principal": principal, "Action": "lambda:InvokeFunction", "Resource": TARGET}
    return pol(stmt, resource_policy=True)


INVOKE = [
    # (identity statements, resource policy, allowed)
    ([], None, False),
    ([allow("lambda:InvokeFunction", TARGET)], None, True),
    ([], resource_policy({"AWS": "arn:aws:iam::000000000000:role/r"}), True),
    ([], resource_policy({"AWS": "arn:aws:sts::000000000000:assumed-role/r/me"}), True),
    ([], resource_policy("*"), True),
    ([], resource_policy({"AWS": "arn:aws:iam::000000000000:role/other"}), False),
    # naming the account only delegates to the caller's identity policies, as on AWS
    ([], resource_policy({"AWS": "arn:aws:iam::000000000000:root"}), False),
    ([allow("lambda:InvokeFunction", TARGET)], resource_policy({"AWS": "000000000000"}), True),
    ([], resource_policy({"Service": "s3.amazonaws.com"}), False),
    ([allow("lambda:InvokeFunction", TARGET)], resource_policy("*", "Deny"), False),
]  # fmt: skip


@pytest.mark.parametrize(("statements", "resource", "allowed"), INVOKE)
def test_invoke_with_identity_and_resource_policies(
    statements: list[dict[str, Any]], resource: Policy | None, allowed: bool
) -> None:
    verdict = decide(caller(*statements), [Check("lambda:InvokeFunction", TARGET)], [resource] if resource else [])
    assert (verdict is None) is allowed, verdict


def test_denial_message_names_action_resource_and_role() -> None:
    message = decide(caller(allow(GET, "arn:aws:s3:::x/*")), [Check("s3:PutObject", "arn:aws:s3:::b/k")])
    assert message == (
        "User: arn:aws:sts::000000000000:assumed-role/r/me is not authorized to perform: s3:PutObject on resource: "
        "arn:aws:s3:::b/k because no identity-based policy allows the s3:PutObject action"
    )
    message = decide(caller(allow("*", "*"), deny(GET, "*")), [Check(GET, OBJ)])
    assert message is not None and message.endswith("with an explicit deny in an identity-based policy")
    message = decide(caller(problem="the function's role x does not exist"), [Check(GET, OBJ)])
    assert message is not None and message.endswith("(the function's role x does not exist)")
    # every check of a request must pass (CopyObject: read the source and write the target)
    checks = [Check("s3:PutObject", "arn:aws:s3:::b/k"), Check(GET, "arn:aws:s3:::src/s")]
    assert decide(caller(allow("s3:PutObject", "*")), checks) is not None


GRANTS = [
    ([{"s3": "photos/originals/*", "actions": ["read"]}],
     [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::photos/originals/*"}]),
    ([{"s3": "photos", "actions": ["write"]}],
     [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
       "Resource": "arn:aws:s3:::photos/*"}]),
    ([{"s3": "photos/in/*", "actions": ["list"]}],
     [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::photos",
       "Condition": {"StringLike": {"s3:prefix": "in/*"}}}]),
    ([{"sqs": "jobs", "actions": ["send"]}],
     [{"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
       "Resource": "arn:aws:sqs:*:*:jobs"}]),
    ([{"invoke": "resize"}],
     [{"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
       "Resource": ["arn:aws:lambda:*:*:function:resize", "arn:aws:lambda:*:*:function:resize:*"]}]),
    ([{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}],
     [{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]),
]  # fmt: skip


@pytest.mark.parametrize(("items", "statements"), GRANTS)
def test_grants_expand_to_statements(items: list[Any], statements: list[dict[str, Any]]) -> None:
    assert expand_policies(items) == statements
    parse_policy({"Statement": statements})  # always a valid identity policy


def test_grants_do_what_they_say() -> None:
    policy = parse_policy({"Statement": expand_policies([{"s3": "photos/originals/*", "actions": ["read", "list"]}])})
    assert evaluate([policy], GET, OBJ) == "allow"
    assert evaluate([policy], "s3:PutObject", OBJ) == "implicit"
    assert evaluate([policy], "s3:ListBucket", "arn:aws:s3:::photos", {"s3:prefix": "originals/"}) == "allow"
    assert evaluate([policy], "s3:ListBucket", "arn:aws:s3:::photos", {"s3:prefix": "private/"}) == "implicit"


@pytest.mark.parametrize(
    ("items", "key", "fragment"),
    [
        ([{"s3": "photos", "actions": ["reed"]}], "[0].actions", "unknown s3 action 'reed'"),
        ([{"s3": "photos"}], "[0].actions", "missing"),
        ([{"sqs": "q", "s3": "b"}], "[0]", "exactly one of"),
        ([{"invoke": "f", "actions": ["x"]}], "[0].actions", "unknown key"),
        ([{"Effect": "Allow", "Action": "s3:*"}], "[0]", "Resource"),
        ("s3: photos", "", "must be a list"),
    ],
)
def test_bad_grants_say_what_to_fix(items: Any, key: str, fragment: str) -> None:
    with pytest.raises(GrantError) as info:
        expand_policies(items)
    assert info.value.key == key
    assert fragment in info.value.message
