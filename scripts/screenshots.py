"""Take the dashboard screenshots in docs/img/ (not a test): a real ``squall up`` with some traffic, Debian's
chromium through Playwright.  Run from the repository root: ``.venv/bin/python scripts/screenshots.py``."""

from __future__ import annotations

import json
import math
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create, eventually, signed_get  # noqa: E402
from tests.e2e.test_dashboard import FLAKY, HELLO, seed  # noqa: E402

OUT = ROOT / "docs" / "img"

THUMB = """
import time, random
def handler(event, context):
    print("resizing", event.get("key"))
    time.sleep(random.uniform(0.02, 0.12))
    return {"ok": True}
"""


def signed(sq: SquallProcess, method: str, path: str, body: Any) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body).encode()
    req = AWSRequest(method=method, url=sq.url + path, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(sq.url + path, data=data, method=method, headers=dict(req.headers.items()))
    urllib.request.urlopen(r, timeout=30).read()


def history(sq: SquallProcess, functions: dict[str, tuple[int, float, float]]) -> None:
    """A day of synthetic records (name -> (memory MB, mean duration ms, error rate)), written straight into the
    store so the charts have a shape: a daily curve with a burst, and a slow deploy an hour ago."""
    from squall.functions.store.metadata import SqliteMetadataStore
    from squall.functions.store.records import InvocationRecord

    rng = random.Random(11)
    now = time.time()
    records = []
    for name, (memory, mean_ms, error_rate) in functions.items():
        t = now - 86400
        while t < now - 120:
            hour = (t - now) / 3600 + 24
            rate = 0.25 + 0.2 * math.sin(hour / 24 * 2 * math.pi) ** 2 + (0.6 if 20.5 < hour < 21.2 else 0)
            t += rng.expovariate(rate)
            slow = 1.8 if 22.6 < hour < 23.0 else 1.0
            duration = rng.lognormvariate(math.log(mean_ms * slow), 0.45)
            status = "error" if rng.random() < error_rate * (3 if slow > 1 else 1) else "ok"
            cold = rng.random() < 0.02
            records.append(
                InvocationRecord(
                    f"hist-{name}-{len(records)}", name, "$LATEST", "lambda-api", t, duration,
                    max(1, math.ceil(duration)), rng.uniform(90, 260) if cold else None, memory,
                    int(memory * 0.2), status, "ValueError" if status == "error" else None, cold, False,
                )
            )  # fmt: skip
    store = SqliteMetadataStore(sq.data_dir / "squall.db")
    store.write_batch(records, [])
    store.close()


def traffic(sq: SquallProcess) -> None:
    lam = sq.client("lambda")
    create(lam, "thumbnails", THUMB, MemorySize=512)
    lam.put_function_concurrency(FunctionName="thumbnails", ReservedConcurrentExecutions=10)
    rng = random.Random(3)
    for i in range(60):
        lam.invoke(FunctionName="hello", Payload=json.dumps({"i": i, "sleep": rng.choice([0, 0.005, 0.02])}))
        lam.invoke(FunctionName="orders", Payload=json.dumps({"order": 100 + i, "fail": rng.random() < 0.12}))
        if i % 2 == 0:
            lam.invoke(FunctionName="thumbnails", Payload=json.dumps({"key": f"photos/{i}.jpg"}))
        time.sleep(0.05)
    sqs = sq.client("sqs")
    url = sqs.create_queue(QueueName="thumbnail-jobs")["QueueUrl"]
    for i in range(7):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"key": f"photos/{i}.jpg"}))
    sqs.create_queue(QueueName="thumbnail-events")
    arn = "arn:aws:sqs:us-east-1:000000000000:thumbnail-events"
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="thumbnails", BatchSize=10)
    lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
    signed(sq, "PUT", "/_squall/api/routes/orders", {"routes": ["POST /orders", "GET /orders/{id}"]})
    signed(
        sq,
        "PUT",
        "/_squall/api/schedules/orders",
        {"schedules": [{"name": "nightly-report", "expression": "cron(0 3 * * ? *)"}]},
    )
    s3 = sq.client("s3")
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_notification_configuration(
        Bucket="photos",
        NotificationConfiguration={"LambdaFunctionConfigurations": [{
            "LambdaFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:thumbnails",
            "Events": ["s3:ObjectCreated:*"],
        }]},
    )  # fmt: skip
    history(sq, {"hello": (256, 6.0, 0.0), "orders": (128, 14.0, 0.03), "thumbnails": (512, 85.0, 0.005)})
    eventually(lambda: signed_get(sq.url, "/_squall/api/invocations?limit=200")[1]["invocations"], what="records")


def shoot(page: Any, name: str, wait: str, full: bool = True) -> None:
    page.wait_for_selector(wait)
    page.wait_for_timeout(600)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)
    print("wrote", OUT / f"{name}.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sq = SquallProcess(Path(tmp) / "data", SQUALL_TRACE_SAMPLE="1").start()  # every invocation has its trace
        try:
            names = seed(sq)
            traffic(sq)
            _ = (names, FLAKY, HELLO)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                ctx = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
                page = ctx.new_page()
                page.goto(sq.url + "/ui/login")
                shoot(page, "dashboard-login", "form.login", full=False)
                page.fill("#access_key_id", KEY_ID)
                page.fill("#secret_access_key", SECRET)
                page.click("button[type=submit]")
                shoot(page, "dashboard-overview", "#functions")
                page.goto(sq.url + "/ui#/functions/orders?window=24h")
                shoot(page, "dashboard-function", "#chart-cost canvas")
                page.goto(sq.url + "/ui#/invocations?function=orders")
                page.wait_for_selector(".inv-table tr[data-rid]")
                page.locator(".inv-table tr[data-rid]").nth(1).click()
                page.wait_for_selector("#logs")
                page.wait_for_function("!document.querySelector('#trace').innerText.includes('Loading')")
                shoot(page, "dashboard-invocation", "#timing", full=False)
                page.goto(sq.url + "/ui#/queues?view=orders-dlq")
                shoot(page, "dashboard-queues", "#messages")
                page.goto(sq.url + "/ui#/usage")
                shoot(page, "dashboard-usage", "#usage-table")
                browser.close()
        finally:
            sq.stop()


if __name__ == "__main__":
    main()
