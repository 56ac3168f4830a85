"""The AWS managed policies Lambda tutorials attach (``arn:aws:iam::aws:policy/...``), built in so AttachRolePolicy
with their ARNs works as on AWS.  Their documents keep only the statements about services Squall implements (S3,
SQS, Lambda); CloudWatch Logs, X-Ray and EC2 statements would grant nothing here.  A SAM/serverless translator may
reuse ``AWS_MANAGED`` to expand managed policy names into statements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AWS_MANAGED", "aws_managed_arn", "aws_managed_document"]

_LOGS: list[dict[str, Any]] = [
    {
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*",
    }
]

#: name -> (path, statements)
AWS_MANAGED: Mapping[str, tuple[str, list[dict[str, Any]]]] = {
    "AWSLambdaBasicExecutionRole": ("/service-role/", _LOGS),
    "AWSLambdaExecute": (
        "/",
        [*_LOGS, {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*"}],
    ),
    "AWSLambdaSQSQueueExecutionRole": (
        "/service-role/",
        [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": "*",
            },
            *_LOGS,
        ],
    ),
    "AWSLambdaRole": ("/service-role/", [{"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["*"]}]),
    "AmazonS3ReadOnlyAccess": (
        "/",
        [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*"], "Resource": "*"}],
    ),
    "AmazonS3FullAccess": ("/", [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]),
    "AmazonSQSReadOnlyAccess": (
        "/",
        [
            {
                "Effect": "Allow",
                "Action": [
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ListDeadLetterSourceQueues",
                    "sqs:ListQueues",
                    "sqs:ListMessageMoveTasks",
                    "sqs:ListQueueTags",
                ],
                "Resource": "*",
            }
        ],
    ),
    "AmazonSQSFullAccess": ("/", [{"Effect": "Allow", "Action": ["sqs:*"], "Resource": "*"}]),
    "AWSLambda_ReadOnlyAccess": (
        "/",
        [{"Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*"], "Resource": "*"}],
    ),
    "AWSLambda_FullAccess": ("/", [{"Effect": "Allow", "Action": ["lambda:*", "s3:*", "sqs:*"], "Resource": "*"}]),
}


def aws_managed_arn(name: str) -> str:
    path, _ = AWS_MANAGED[name]
    return f"arn:aws:iam::aws:policy{path}{name}"


def aws_managed_document(name: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": AWS_MANAGED[name][1]}
