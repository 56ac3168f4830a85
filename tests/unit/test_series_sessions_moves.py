"""Dashboard sessions (squall.dashboard.ui.sessions) and dead-letter redrive (squall.sqs.store.moves), without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squall.aws.sigv4 import AuthContext
from squall.core.clock import FakeClock
from squall.core.errors import InvalidParameterValue
from squall.dashboard.ui.sessions import CSRF_HEADER, SessionGate, Sessions
from squall.sqs.store.moves import ResourceNotFound, list_move_tasks, peek_messages, start_move_task
from squall.sqs.store.queues import QueueStore

ADMIN, SECRET = "AKSQADMIN", "s3cret"
SCOPED, SCOPED_SECRET = "AKSQFUNC", "fn-secret"


def _sessions(now: list[float]) -> Sessions:
    secrets = {ADMIN: SECRET, SCOPED: SCOPED_SECRET}
    return Sessions(lambda k: k == ADMIN, secrets.get, ttl_s=60, clock=lambda: now[0])


def test_login_only_with_the_admin_key_and_sessions_expire() -> None:
    now = [1000.0]
    s = _sessions(now)
    assert s.login(ADMIN, "wrong") is None
    assert s.login(SCOPED, SCOPED_SECRET) is None
    assert s.login("AKSQNOBODY", "x") is None
    token = s.login(ADMIN, SECRET)
    assert token and s.get(token) is not None and s.csrf_token(token)
    now[0] += 61
    assert s.get(token) is None
    token = s.login(ADMIN, SECRET)
    s.logout(token)
    assert s.get(token) is None


def _scope(path: str, method: str = "GET") -> dict[str, object]:
    return {"type": "http", "path": path, "method": method, "query_string": b""}


def test_gate_redirects_ui_checks_csrf_and_leaves_other_paths_to_sigv4() -> None:
    s = _sessions([0.0])
    gate = SessionGate(s, "us-east-1")
    token = s.login(ADMIN, SECRET)
    assert token is not None
    cookie = {"cookie": f"other=1; squall_session={token}"}
    # no cookie: /ui redirects to the login page, the API falls through to SigV4
    redirect = gate(_scope("/ui"), {})
    assert getattr(redirect, "status_code", None) == 303
    assert gate(_scope("/_squall/api/usage"), {}) is None
    # with the cookie: dashboard paths only
    assert isinstance(gate(_scope("/_squall/api/usage"), cookie), AuthContext)
    assert gate(_scope("/2015-03-31/functions/"), cookie) is None
    # a signed request is SigV4's business even with a cookie
    assert gate(_scope("/_squall/api/usage"), {**cookie, "authorization": "AWS4-HMAC-SHA256 ..."}) is None
    # POST needs the session's CSRF token
    refused = gate(_scope("/_squall/api/dashboard/queues/q/redrive", "POST"), cookie)
    assert getattr(refused, "status_code", None) == 403
    refused = gate(_scope("/_squall/api/dashboard/queues/q/redrive", "POST"), {**cookie, CSRF_HEADER: "nope"})
    assert getattr(refused, "status_code", None) == 403
    ok = gate(
        _scope("/_squall/api/dashboard/queues/q/redrive", "POST"), {**cookie, CSRF_HEADER: s.csrf_token(token) or ""}
    )
    assert isinstance(ok, AuthContext) and ok.access_key_id == ADMIN


def _dead_letter(store: QueueStore, clock: FakeClock, body: str) -> None:
    store.send("src", body)
    assert store.receive("src", 1)
    clock.advance(31)  # visibility timeout
    assert store.receive("src", 1) == []  # the second receive moves it to the DLQ


def test_redrive_moves_visible_dlq_messages_back_to_their_source(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = QueueStore(tmp_path / "q.db", clock=clock)
    dlq = store.create_queue("dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": "1"})
    src = store.create_queue("src", {"RedrivePolicy": policy})
    store.create_queue("plain")
    _dead_letter(store, clock, "one")
    _dead_letter(store, clock, "two")
    peeked = peek_messages(store, "dlq")
    assert [m["body"] for m in peeked] == ["one", "two"]
    assert all(m["dead_letter_source_arn"] == src.arn for m in peeked)

    with pytest.raises(InvalidParameterValue):
        start_move_task(store, src.arn)  # not a dead-letter queue
    with pytest.raises(ResourceNotFound):
        start_move_task(store, dlq.arn, store.queue_arn("missing"))
    task = start_move_task(store, dlq.arn)
    assert (task.status, task.moved, task.to_move) == ("COMPLETED", 2, 2)
    assert peek_messages(store, "dlq") == []
    got = store.receive("src", 10)
    assert sorted(m.body for m in got) == ["one", "two"]
    assert all(m.receive_count == 1 for m in got)  # counted from zero again
    assert "DeadLetterQueueSourceArn" not in got[0].attributes
    # to an explicit destination
    clock.advance(31)
    assert store.receive("src", 10) == []  # both dead-lettered again
    task = start_move_task(store, dlq.arn, store.queue_arn("plain"), 10)
    assert task.moved == 2 and [m["body"] for m in peek_messages(store, "plain")] == ["one", "two"]
    tasks = list_move_tasks(store, dlq.arn, 10)
    assert [t.moved for t in tasks] == [2, 2] and tasks[0].destination_arn == store.queue_arn("plain")
    assert tasks[0].to_sqs()["MaxNumberOfMessagesPerSecond"] == 10


def test_redrive_leaves_messages_whose_source_is_gone(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = QueueStore(tmp_path / "q.db", clock=clock)
    dlq = store.create_queue("dlq")
    store.create_queue("src", {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": "1"})})
    store.create_queue("other", {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": "1"})})
    _dead_letter(store, clock, "orphan")
    store.delete_queue("src")
    task = start_move_task(store, dlq.arn)
    assert (
        task.status == "FAILED"
        and task.moved == 0
        and task.to_move == 1
        and "no longer exists" in (task.failure_reason or "")
    )
    assert [m["body"] for m in peek_messages(store, "dlq")] == ["orphan"]
