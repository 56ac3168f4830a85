"""The server's wiring of account-wide settings and functions' keys, through real clients.

* ``SQUALL_ACCOUNT_CONCURRENCY`` reaches the control plane: GetAccountSettings reports it, and PutFunctionConcurrency
  refuses a reservation that leaves fewer than 100 unreserved executions, as Lambda does.
* DeleteFunction revokes the access key its instances were given: a leaked key of a deleted function is refused
  (``InvalidClientTokenId``, 403) instead of acting with the deleted function's role.
* A knob with a value Squall cannot use stops ``squall up`` with one line naming the knob, not a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e._platform import SquallProcess, create, execution_role, free_port

KEY_CODE = """
import os

def handler(event, context):
    return {"id": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"]}
"""


def test_account_concurrency_reaches_the_control_plane(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data", SQUALL_ACCOUNT_CONCURRENCY="250")
    try:
        proc.start()
        lam = proc.client()
        limits = lam.get_account_settings()["AccountLimit"]
        assert (limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]) == (250, 250)
        create(lam, "reserved", "def handler(event, context):\n    return 1\n")
        with pytest.raises(ClientError) as refused:
            lam.put_function_concurrency(FunctionName="reserved", ReservedConcurrentExecutions=151)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "100" in refused.value.response["Error"]["Message"]
        assert (
            lam.put_function_concurrency(FunctionName="reserved", ReservedConcurrentExecutions=150)[
                "ReservedConcurrentExecutions"
            ]
            == 150
        )
        assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    finally:
        proc.stop()


def test_delete_function_revokes_its_key(tmp_path: Path) -> None:
    proc = SquallProcess(tmp_path / "data")
    try:
        proc.start()
        lam = proc.client()
        create(lam, "holder", KEY_CODE, Role=execution_role(proc, "holder-role"))
        out = lam.invoke(FunctionName="holder", Payload=b"{}")
        key = json.loads(out["Payload"].read())

        def caller() -> dict[str, Any]:
            sts = boto3.client(
                "sts", endpoint_url=proc.url, region_name="us-east-1", aws_access_key_id=key["id"],
                aws_secret_access_key=key["secret"], config=Config(retries={"max_attempts": 0}),
            )  # fmt: skip
            return sts.get_caller_identity()

        assert "holder" in caller()["Arn"]  # the key works while the function exists
        lam.delete_function(FunctionName="holder")
        with pytest.raises(ClientError) as refused:
            caller()
        assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # a new function of the same name gets a new key, not the old one back
        create(lam, "holder", KEY_CODE, Role=execution_role(proc, "holder-role"))
        again = json.loads(lam.invoke(FunctionName="holder", Payload=b"{}")["Payload"].read())
        assert again["id"] != key["id"]
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("SQUALL_KEEP_ALIVE_POLICY", "bogus"),
        ("SQUALL_ACCOUNT_CONCURRENCY", "lots"),
        ("SQUALL_KEEP_ALIVE_S", "soon"),
        ("SQUALL_METRICS", "maybe"),
        ("SQUALL_PUBLIC_URL", "squall.example.com"),
    ],
)
def test_a_bad_knob_is_one_line_naming_it(tmp_path: Path, knob: str, value: str) -> None:
    env = {**os.environ, knob: value}
    done = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "up", "--data-dir", str(tmp_path / "data"), "--port",
         str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{knob}={value!r}" in done.stderr, done.stderr
