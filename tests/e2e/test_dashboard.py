"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real ``squall up``.

Seeds functions (one that fails now and then), invocations, and an SQS queue whose dead-letter queue holds a
message; then signs in, checks every page renders its data (charts drawn on canvas), opens an invocation's logs
and its trace (or the "Not sampled" note, with the default sampling), and redrives the dead-letter queue, verifying
with boto3 that the message is back in its source queue.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create, eventually, signed_get

CHROMIUM = os.environ.get("SQUALL_CHROMIUM", "/usr/bin/chromium")

HELLO = """
import json, time
def handler(event, context):
    print("hello from", context.function_name, json.dumps(event))
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""

FLAKY = """
def handler(event, context):
    print("processing order", event.get("order"))
    if event.get("fail"):
        raise ValueError("order %s is invalid" % event.get("order"))
    return {"order": event.get("order")}
"""


def invoke_with_traceparent(lam: Any, function: str, traceparent: str) -> str:
    """Invoke with a caller's ``traceparent`` (its sampled flag decides whether a trace is kept); the request id."""

    def add(request: Any, **_: Any) -> None:
        request.headers["traceparent"] = traceparent

    lam.meta.events.register("before-sign.lambda.Invoke", add)
    try:
        resp = lam.invoke(FunctionName=function, Payload=b"{}")
    finally:
        lam.meta.events.unregister("before-sign.lambda.Invoke", add)
    return str(resp["ResponseMetadata"]["RequestId"])


def seed(sq: SquallProcess) -> dict[str, Any]:
    """Functions, invocations (some failing), a queue with a DLQ holding one message.  Returns names."""
    lam = sq.client("lambda")
    create(lam, "hello", HELLO, MemorySize=256)
    create(lam, "orders", FLAKY)
    for i in range(6):
        lam.invoke(FunctionName="hello", Payload=json.dumps({"i": i, "sleep": 0.01 * (i % 3)}))
    for i in range(8):
        lam.invoke(FunctionName="orders", Payload=json.dumps({"order": i, "fail": i % 3 == 0}))
    lam.invoke(FunctionName="orders", InvocationType="Event", Payload=json.dumps({"order": 99}))
    traced = invoke_with_traceparent(lam, "hello", "00-" + "a1" * 16 + "-" + "b2" * 8 + "-01")
    untraced = invoke_with_traceparent(lam, "hello", "00-" + "c3" * 16 + "-" + "d4" * 8 + "-00")
    sqs = sq.client("sqs")
    dlq_url = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src_url = sqs.create_queue(
        QueueName="orders-in",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"}),
            "VisibilityTimeout": "0",
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=src_url, MessageBody=json.dumps({"order": 42, "note": "poison"}))
    # received once (count 1 = maxReceiveCount); the next receive moves it to the DLQ
    assert len(sqs.receive_message(QueueUrl=src_url).get("Messages", [])) == 1
    assert sqs.receive_message(QueueUrl=src_url).get("Messages", []) == []
    depth = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "1"

    def recorded() -> bool:
        status, body = signed_get(sq.url, "/_squall/api/invocations?limit=100")
        return status == 200 and len(body["invocations"]) >= 14

    eventually(recorded, what="invocation records flushed")
    return {"src_url": src_url, "dlq_url": dlq_url, "dlq_arn": dlq_arn, "traced": traced, "untraced": untraced}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SquallProcess, dict[str, Any]]]:
    # the default trace sampling (whatever the environment says): most invocations have no trace
    sq = SquallProcess(
        tmp_path_factory.mktemp("dash") / "data", SQUALL_TRACE_SAMPLE="", SQUALL_TRACE_RESERVOIR=""
    ).start()
    try:
        yield sq, seed(sq)
    finally:
        sq.stop()


def _browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (scripts/test.sh installs Debian's chromium)")
    return sync_api


@pytest.fixture(scope="module")
def page(server: tuple[SquallProcess, dict[str, Any]]) -> Iterator[Any]:
    sync_api = _browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        pg = ctx.new_page()
        pg.set_default_timeout(20_000)
        yield pg
        browser.close()


def login(pg: Any, url: str, key: str = KEY_ID, secret: str = SECRET) -> None:
    pg.goto(url + "/ui")
    pg.wait_for_url("**/ui/login**")
    pg.fill("#access_key_id", key)
    pg.fill("#secret_access_key", secret)
    pg.click("button[type=submit]")


def test_browser_walkthrough(server: tuple[SquallProcess, dict[str, Any]], page: Any) -> None:
    sq, names = server
    pg = page
    login(pg, sq.url)
    pg.wait_for_url("**/ui")
    # overview: both functions with their stats
    pg.wait_for_selector("#functions tr[data-fn='orders']")
    row = pg.locator("#functions tr[data-fn='orders']")
    assert "python3.11" in row.inner_text()
    pg.wait_for_function("document.querySelector(\"#functions tr[data-fn='hello']\").innerText.includes('256 MB')")

    # function page: charts are drawn (uPlot canvases) with data
    pg.click("#functions tr[data-fn='orders'] a")
    pg.wait_for_url("**#/functions/orders")
    pg.wait_for_selector("#chart-inv canvas")
    for chart in ("inv", "dur", "cold", "conc", "cost"):
        assert pg.locator(f"#chart-{chart} canvas").count() >= 1
    pg.wait_for_function(
        "document.querySelector('#fn-cards') && document.querySelector('#fn-cards').innerText.includes('9')"
    )
    # the canvas has non-background pixels (something was plotted)
    drawn = pg.evaluate(
        """() => { const c = document.querySelector('#chart-inv canvas'); const d = c.getContext('2d')
            .getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
            return n; }"""
    )
    assert drawn > 100
    assert "Configuration" in pg.inner_text("main")

    # invocations: filter errors of orders, open one, see its logs and timing
    pg.goto(sq.url + "/ui#/invocations?function=orders&status=error")
    pg.wait_for_selector(".inv-table tr[data-rid]")
    assert pg.locator(".inv-table tr[data-rid]").count() == 3
    pg.locator(".inv-table tr[data-rid]").first.click()
    pg.wait_for_selector("#logs")
    logs = pg.inner_text("#logs")
    assert "processing order" in logs and "is invalid" in logs
    assert pg.locator("#timing .run").count() == 1
    pg.wait_for_function("!document.querySelector('#trace').innerText.includes('Loading')")
    pg.keyboard.press("Escape")

    # an invocation that was not sampled says so (and why); a traced one shows its waterfall
    pg.goto(sq.url + "/ui#/invocations?function=hello")
    pg.locator(f".inv-table tr[data-rid='{names['untraced']}']").click()
    pg.wait_for_function(
        "document.querySelector('#trace') && document.querySelector('#trace').innerText.includes('Not sampled')"
    )
    note = pg.inner_text("#trace")
    assert "1/s per function + 5% are traced" in note and "SQUALL_TRACE_SAMPLE" in note, note
    pg.keyboard.press("Escape")  # the drawer covers part of the table
    pg.locator(f".inv-table tr[data-rid='{names['traced']}']").click()
    pg.wait_for_selector("#trace .wf-row")
    waterfall = pg.inner_text("#trace")
    assert "a1" * 16 in waterfall and "Invoke hello" in waterfall and "instance" in waterfall, waterfall
    pg.keyboard.press("Escape")

    # queues: the DLQ shows its message; Redrive moves it back to the source queue
    pg.goto(sq.url + "/ui#/queues")
    dlq_row = pg.locator("#queue-table tr[data-q='orders-dlq']")
    dlq_row.wait_for()
    assert "DLQ" in dlq_row.inner_text()
    dlq_row.locator("button[data-act=view]").click()
    pg.wait_for_selector("#messages")
    assert "poison" in pg.inner_text("#messages")
    dlq_row.locator("button[data-act=redrive]").click()
    pg.wait_for_selector("#toast:not([hidden])")
    assert "Redrove 1 message" in pg.inner_text("#toast")
    sqs = sq.client("sqs")

    def back() -> list[Any]:
        got: list[Any] = sqs.receive_message(QueueUrl=names["src_url"]).get("Messages", [])
        return got

    messages = eventually(back, what="the redriven message in the source queue")
    assert json.loads(messages[0]["Body"])["note"] == "poison"
    depth = sqs.get_queue_attributes(QueueUrl=names["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "0"

    # usage: per-function cost with break-even
    pg.goto(sq.url + "/ui#/usage")
    pg.wait_for_selector("#usage-table")
    text = pg.inner_text("#usage-table")
    assert "orders" in text and "hello" in text and ("cheaper" in text)


def test_ui_without_session_redirects_to_login(server: tuple[SquallProcess, dict[str, Any]]) -> None:
    sq, _ = server

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(sq.url + "/ui#/queues", timeout=10)
    assert e.value.code == 303 and e.value.headers["Location"].startswith("/ui/login")
    e.value.close()
    # the API without a cookie still wants SigV4
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(sq.url + "/_squall/api/dashboard/overview", timeout=10)
    assert e.value.code == 403
    e.value.close()
    # and a signed request still works
    status, body = signed_get(sq.url, "/_squall/api/dashboard/overview")
    assert status == 200 and {f["name"] for f in body["functions"]} == {"hello", "orders"}


def _post_login(url: str, key: str, secret: str) -> tuple[int, str | None]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    data = urllib.parse.urlencode({"access_key_id": key, "secret_access_key": secret, "next": "/ui"}).encode()
    try:
        with urllib.request.build_opener(NoRedirect).open(url + "/ui/login", data=data, timeout=10) as resp:
            return resp.status, resp.headers.get("Set-Cookie")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Set-Cookie")


def test_login_refuses_wrong_secret_and_scoped_keys(server: tuple[SquallProcess, dict[str, Any]]) -> None:
    sq, _ = server
    status, cookie = _post_login(sq.url, KEY_ID, SECRET[:-1] + "x")
    assert status == 401 and cookie is None
    # a function's scoped key is valid for SigV4 but is not the admin key
    creds = json.loads((sq.data_dir / "credentials.json").read_text())
    scoped = next(iter(creds["scoped"].values()))
    status, cookie = _post_login(sq.url, scoped["access_key_id"], scoped["secret_access_key"])
    assert status == 401 and cookie is None
    status, cookie = _post_login(sq.url, KEY_ID, SECRET)
    assert status == 303 and cookie is not None
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_post_with_cookie_needs_the_csrf_header(server: tuple[SquallProcess, dict[str, Any]]) -> None:
    sq, _ = server
    status, cookie = _post_login(sq.url, KEY_ID, SECRET)
    assert status == 303 and cookie
    session = cookie.split(";")[0]
    url = sq.url + "/_squall/api/dashboard/queues/orders-dlq/redrive"
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Cookie": session})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403 and e.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    e.value.close()
    # a wrong token is refused too; GET with the cookie alone is fine
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Cookie": session, "X-Squall-CSRF": "x"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403
    e.value.close()
    get = urllib.request.Request(sq.url + "/_squall/api/dashboard/queues", headers={"Cookie": session})
    with urllib.request.urlopen(get, timeout=10) as resp:
        assert resp.status == 200
    # the cookie grants the dashboard's paths only, not the Lambda control plane
    other = urllib.request.Request(sq.url + "/2015-03-31/functions/", headers={"Cookie": session})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(other, timeout=10)
    assert e.value.code == 403
    e.value.close()


def test_sqs_message_move_task_api(server: tuple[SquallProcess, dict[str, Any]]) -> None:
    sq, names = server
    sqs = sq.client("sqs")
    sqs.send_message(QueueUrl=names["src_url"], MessageBody="again")

    def dead_lettered() -> list[Any]:
        # receiving hands each message out once; the next receive moves it to the DLQ (maxReceiveCount 1)
        sqs.receive_message(QueueUrl=names["src_url"], MaxNumberOfMessages=10)
        status, body = signed_get(sq.url, "/_squall/api/dashboard/queues/orders-dlq/messages")
        assert status == 200
        bodies: list[Any] = [m["body"] for m in body["messages"]]
        return bodies if "again" in bodies else []

    in_dlq = eventually(dead_lettered, what="'again' dead-lettered")
    handle = sqs.start_message_move_task(SourceArn=names["dlq_arn"])["TaskHandle"]
    tasks = sqs.list_message_move_tasks(SourceArn=names["dlq_arn"], MaxResults=10)["Results"]
    assert tasks[0]["TaskHandle"] == handle and tasks[0]["Status"] == "COMPLETED"
    assert tasks[0]["ApproximateNumberOfMessagesMoved"] == len(in_dlq)
    got = sqs.receive_message(QueueUrl=names["src_url"], MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(m["Body"] for m in got) == sorted(in_dlq)
    src_arn = sqs.get_queue_attributes(QueueUrl=names["src_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(sqs.exceptions.ClientError) as e:
        sqs.start_message_move_task(SourceArn=src_arn)  # not a dead-letter queue
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
