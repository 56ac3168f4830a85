"""Schedules API against a real ``squall up``: PUT replaces a function's schedules, GET lists them, bad
expressions are 400, deleting the function drops them.  (Firing is covered with a fake clock in
tests/unit/test_schedule_runner.py: the shortest real schedule is one minute.)"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create, eventually, signed_get


def signed_put(base_url: str, path: str, body: Any) -> tuple[int, Any]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body).encode()
    req = AWSRequest(method="PUT", url=base_url + path, data=data, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(base_url + path, data=data, headers=dict(req.headers.items()), method="PUT")
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SquallProcess]:
    p = SquallProcess(Path(tmp_path_factory.mktemp("schedules")) / "data").start()
    yield p
    p.stop()


def test_put_get_invalid_and_delete(squall: SquallProcess) -> None:
    lam = squall.client("lambda")
    create(lam, "cronjob", "def handler(event, context):\n    return event\n")
    schedules = [
        {"name": "every5", "expression": "rate(5 minutes)"},
        {"name": "noon", "expression": "cron(0 12 * * ? *)", "input": {"report": "daily"}, "catch_up": True},
    ]
    status, out = signed_put(squall.url, "/_squall/api/schedules/cronjob", {"schedules": schedules})
    assert status == 200, out
    status, listed = signed_get(squall.url, "/_squall/api/schedules")
    assert status == 200
    rules = {r["name"]: r for r in listed["schedules"]}
    assert set(rules) == {"every5", "noon"}
    assert rules["every5"]["expression"] == "rate(5 minutes)" and rules["every5"]["enabled"] is True
    assert rules["noon"]["input"] == {"report": "daily"} and rules["noon"]["catch_up"] is True
    assert rules["every5"]["rule_arn"].endswith(":rule/squall-cronjob-every5")
    assert rules["every5"]["next_fire"] > rules["every5"]["created_at"]

    # invalid expressions: 400 with Lambda's error shape, and the stored schedules are untouched
    for bad in ("rate(5 minute)", "cron(0 12 * * * *)", "tomorrow"):
        status, err = signed_put(
            squall.url, "/_squall/api/schedules/cronjob", {"schedules": [{"name": "x", "expression": bad}]}
        )
        assert status == 400, (bad, err)
        assert err["Type"] == "User" or "InvalidParameterValue" in json.dumps(err)
    status, _ = signed_put(squall.url, "/_squall/api/schedules/nosuch", {"schedules": []})
    assert status == 404
    assert len(signed_get(squall.url, "/_squall/api/schedules/cronjob")[1]["schedules"]) == 2

    # replace: only the new set remains
    status, _ = signed_put(
        squall.url, "/_squall/api/schedules/cronjob", {"schedules": [{"name": "hourly", "expression": "rate(1 hour)"}]}
    )
    assert status == 200
    assert [r["name"] for r in signed_get(squall.url, "/_squall/api/schedules")[1]["schedules"]] == ["hourly"]

    # unsigned requests are refused
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(squall.url + "/_squall/api/schedules", timeout=10)
    assert e.value.code in (401, 403)
    e.value.close()

    lam.delete_function(FunctionName="cronjob")
    eventually(
        lambda: signed_get(squall.url, "/_squall/api/schedules")[1]["schedules"] == [],
        what="schedules dropped with the function",
    )
