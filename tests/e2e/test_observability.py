"""Metrics and traces against a real ``squall up``: /metrics (signed), spans through the trace API, trace context
propagated into functions and through their boto3 calls, OTLP export to a local receiver.

The server runs with the default sampling (X-Ray's rule: 1 new trace per second per function + 5%): the trace tests
send a sampled ``traceparent``/``X-Amzn-Trace-Id``, which is always followed; one test checks the rule itself."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, create, eventually, execution_role, signed_get

ECHO = """
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
"""

NESTED = """
import json, os
import boto3
def handler(event, context):
    s3 = boto3.client("s3")
    s3.put_object(Bucket="traced", Key="k", Body=b"from a function")
    inner = boto3.client("lambda").invoke(FunctionName="obs-echo", Payload=b"{}")
    return {"traceparent": os.environ.get("TRACEPARENT"), "amzn": os.environ.get("_X_AMZN_TRACE_ID"),
            "inner_status": inner["StatusCode"]}
"""

CONTEXT = """
import os
def handler(event, context):
    return {"traceparent": os.environ.get("TRACEPARENT"), "amzn": os.environ.get("_X_AMZN_TRACE_ID")}
"""

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Receiver.got.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def squall(tmp_path_factory: pytest.TempPathFactory, receiver: str) -> Iterator[SquallProcess]:
    proc = SquallProcess(
        tmp_path_factory.mktemp("observability") / "data", SQUALL_OTLP_ENDPOINT=receiver,
        SQUALL_TRACE_SAMPLE="", SQUALL_TRACE_RESERVOIR="",  # the defaults, whatever the environment says
    ).start()  # fmt: skip
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def lam(squall: SquallProcess) -> Any:
    client = squall.client("lambda")
    create(client, "obs-echo", ECHO)
    return client


def _with_header(client: Any, name: str, value: str) -> Any:
    """A copy of ``client`` that sends one extra (signed) header on every request."""
    import boto3

    c = boto3.client(
        client.meta.service_model.service_name, endpoint_url=client.meta.endpoint_url, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, config=client.meta.config,
    )  # fmt: skip

    def add(request: Any, **_: Any) -> None:
        request.headers[name] = value

    c.meta.events.register("before-sign", add)
    return c


def _signed_text(base_url: str, path: str) -> tuple[int, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=base_url + path)
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(base_url + path, headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _trace_of(squall: SquallProcess, request_id: str) -> dict[str, Any]:
    def find() -> Any:
        status, body = signed_get(squall.url, f"/_squall/api/traces?request_id={request_id}")
        assert status == 200, body
        return body["traces"][0] if body["traces"] else None

    trace: dict[str, Any] = eventually(find, what=f"a trace of {request_id}")
    return trace


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_count_invocations_errors_throttles_and_show_state(squall: SquallProcess, lam: Any) -> None:
    for _ in range(3):
        assert lam.invoke(FunctionName="obs-echo", Payload=b"{}")["StatusCode"] == 200
    failed = lam.invoke(FunctionName="obs-echo", Payload=json.dumps({"fail": True}).encode())
    assert failed["FunctionError"] == "Unhandled"
    create(lam, "obs-throttled", ECHO)
    lam.put_function_concurrency(FunctionName="obs-throttled", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="obs-throttled", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "TooManyRequestsException"

    try:
        urllib.request.urlopen(squall.url + "/metrics", timeout=10)
        raise AssertionError("an unsigned /metrics scrape must be refused")
    except urllib.error.HTTPError as err:
        with err:
            assert err.code == 403

    status, text = _signed_text(squall.url, "/metrics")
    assert status == 200, text
    m = _samples(text)
    fn = "obs-echo"
    assert _value(m, "squall_invocations_total", function=fn, status="ok") == 3
    assert _value(m, "squall_invocations_total", function=fn, status="error") == 1
    assert _value(m, "squall_invocation_errors_total", function=fn) == 1
    assert _value(m, "squall_throttles_total", function="obs-throttled") == 1
    assert _value(m, "squall_invocations_total", function="obs-throttled", status="throttled") == 0
    assert _value(m, "squall_cold_starts_total", function=fn) >= 1
    assert _value(m, "squall_invocation_duration_seconds_count", function=fn) == 4
    assert _value(m, "squall_invocation_duration_seconds_bucket", function=fn, le="+Inf") == 4
    assert _value(m, "squall_init_duration_seconds_count", function=fn) >= 1
    assert _value(m, "squall_warm_instances", function=fn) >= 1
    assert ("squall_concurrent_executions", (("function", fn),)) in m
    assert _value(m, "squall_concurrent_executions", function=fn) == 0
    assert ("squall_async_queue_depth", ()) in m
    assert ("squall_async_event_age_seconds", ()) in m
    assert ("squall_zygotes_loaded", ()) in m
    assert _value(m, "squall_node_memory_bytes") >= 0
    assert ("squall_async_events_finished_total", (("outcome", "success"),)) in m


def test_storage_event_deliveries_are_counted(squall: SquallProcess, lam: Any) -> None:
    s3 = squall.client("s3", s3={"addressing_style": "path"})
    arn = lam.get_function_configuration(FunctionName="obs-echo")["FunctionArn"]
    s3.create_bucket(Bucket="obs-inbox")
    s3.put_bucket_notification_configuration(
        Bucket="obs-inbox",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket="obs-inbox", Key="a.txt", Body=b"a")

    def delivered() -> Any:
        status, text = _signed_text(squall.url, "/metrics")
        assert status == 200
        return _value(_samples(text), "squall_event_deliveries_total", source="s3", outcome="ok") >= 1 or None

    eventually(delivered, what="an s3 delivery in squall_event_deliveries_total")


# ------------------------------------------------------------------------------------------------ traces


def _by_name(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in trace["spans"]:
        out.setdefault(s["name"], []).append(s)
    return out


def test_invoke_continues_the_callers_traceparent_with_cold_start_spans(squall: SquallProcess, lam: Any) -> None:
    create(lam, "obs-cold", ECHO)
    traced = _with_header(lam, "traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01")
    resp = traced.invoke(FunctionName="obs-cold", Payload=b"{}")
    request_id = resp["ResponseMetadata"]["RequestId"]
    tp = resp["ResponseMetadata"]["HTTPHeaders"]["traceparent"]
    assert tp.startswith(f"00-{TRACE_ID}-") and tp.endswith("-01")

    trace = _trace_of(squall, request_id)
    assert trace["trace_id"] == TRACE_ID
    assert trace["root"] == "Invoke obs-cold"
    spans = _by_name(trace)
    for name in ("Invoke obs-cold", "invoker", "acquire instance", "cold start", "init", "instance"):
        assert len(spans.get(name, [])) == 1, (name, [s["name"] for s in trace["spans"]])
    edge, invoker, acquire = spans["Invoke obs-cold"][0], spans["invoker"][0], spans["acquire instance"][0]
    cold, init, instance = spans["cold start"][0], spans["init"][0], spans["instance"][0]
    assert all(s["trace_id"] == TRACE_ID for s in trace["spans"])
    assert edge["parent_span_id"] is None and edge["kind"] == "server"
    assert edge["attributes"]["squall.remote_parent_span_id"] == CALLER_SPAN
    assert tp.split("-")[2] == edge["span_id"]
    assert invoker["parent_span_id"] == edge["span_id"]
    assert acquire["parent_span_id"] == invoker["span_id"]
    assert cold["parent_span_id"] == acquire["span_id"]
    assert init["parent_span_id"] == cold["span_id"]
    assert instance["parent_span_id"] == invoker["span_id"]
    assert instance["attributes"]["faas.invocation_id"] == request_id
    assert instance["attributes"]["faas.name"] == "obs-cold"
    assert instance["attributes"]["faas.coldstart"] is True
    assert all(s["status"] == "ok" for s in trace["spans"])
    assert edge["start"] <= invoker["start"] <= instance["start"] <= instance["end"] <= edge["end"]
    assert set(trace) == {"trace_id", "root", "start", "duration_ms", "spans"}
    assert set(instance) == {
        "trace_id", "span_id", "parent_span_id", "name", "start", "end", "duration_ms", "kind", "status", "attributes"
    }  # fmt: skip

    # warm now: no cold start spans, and X-Amzn-Trace-Id works as the parent too
    other = "7bf92f3577b34da6a3ce929d0e0e4739"
    amzn = f"Root=1-{other[:8]}-{other[8:]};Parent={CALLER_SPAN};Sampled=1"
    warm = _with_header(lam, "X-Amzn-Trace-Id", amzn).invoke(FunctionName="obs-cold", Payload=b"{}")
    assert warm["ResponseMetadata"]["HTTPHeaders"]["traceparent"].startswith(f"00-{other}-")
    warm_trace = _trace_of(squall, warm["ResponseMetadata"]["RequestId"])
    names = {s["name"] for s in warm_trace["spans"]}
    assert warm_trace["trace_id"] == other
    assert "cold start" not in names and {"invoker", "instance"} <= names

    status, same = signed_get(squall.url, f"/_squall/api/traces/{TRACE_ID}")
    assert status == 200 and same["trace_id"] == TRACE_ID
    status, listed = signed_get(squall.url, "/_squall/api/traces?function=obs-cold&limit=5")
    assert status == 200 and TRACE_ID in [t["trace_id"] for t in listed["traces"]]
    status, missing = signed_get(squall.url, "/_squall/api/traces/" + "0" * 31 + "1")
    assert status == 404 and "Trace not found" in missing["Message"], missing
    status, none = signed_get(squall.url, "/_squall/api/traces?request_id=no-such-request")
    assert status == 200 and none["traces"] == [], none
    assert none["sampling"] == {"reservoir_per_s": 1, "ratio": 0.05} and none["kept_since"] <= time.time()
    status, _ = signed_get(squall.url, "/_squall/api/traces?limit=0")
    assert status == 400


def test_a_function_calling_s3_and_lambda_continues_the_same_trace(squall: SquallProcess, lam: Any) -> None:
    squall.client("s3", s3={"addressing_style": "path"}).create_bucket(Bucket="traced")
    role = execution_role(
        squall, "obs-nested-role",
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::traced/*"},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:*:*:function:obs-echo"},
    )  # fmt: skip
    create(lam, "obs-nested", NESTED, Timeout=30, Role=role)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traced = _with_header(lam, "traceparent", f"00-{trace_id}-b7ad6b7169203331-01")
    resp = traced.invoke(FunctionName="obs-nested", Payload=b"{}")
    out = json.loads(resp["Payload"].read())
    assert out["inner_status"] == 200, out
    trace = _trace_of(squall, resp["ResponseMetadata"]["RequestId"])

    def complete() -> Any:
        status, t = signed_get(squall.url, f"/_squall/api/traces/{trace_id}")
        names = [s["name"] for s in t["spans"]] if status == 200 else []
        return t if names.count("instance") == 2 and any(n.startswith("S3 ") for n in names) else None

    trace = eventually(complete, what="the nested spans in the trace")
    spans = _by_name(trace)
    outer_instance = next(s for s in spans["instance"] if s["attributes"]["faas.name"] == "obs-nested")
    # what the function saw: the context of its instance span, in both formats
    assert out["traceparent"] == f"00-{trace_id}-{outer_instance['span_id']}-01"
    assert out["amzn"] == f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={outer_instance['span_id']};Sampled=1"
    s3_span = next(s for s in trace["spans"] if s["name"].startswith("S3 "))
    assert s3_span["parent_span_id"] == outer_instance["span_id"]
    assert s3_span["attributes"]["aws.s3.bucket"] == "traced"
    inner_edge = spans["Invoke obs-echo"][0]
    assert inner_edge["parent_span_id"] == outer_instance["span_id"]
    inner_instance = next(s for s in spans["instance"] if s["attributes"]["faas.name"] == "obs-echo")
    assert all(s["trace_id"] == trace_id for s in trace["spans"])
    assert inner_instance["start"] >= outer_instance["start"]


def test_async_invoke_continues_the_trace_on_delivery(squall: SquallProcess, lam: Any) -> None:
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    traced = _with_header(lam, "traceparent", f"00-{trace_id}-{CALLER_SPAN}-01")
    resp = traced.invoke(FunctionName="obs-echo", InvocationType="Event", Payload=b"{}")
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]

    def delivered() -> Any:
        trace = _trace_of(squall, request_id)
        return trace if any(s["name"] == "instance" for s in trace["spans"]) else None

    trace = eventually(delivered, what="the delivery's spans")
    assert trace["trace_id"] == trace_id
    entries = [s for s in trace["spans"] if s["name"] == "Invoke obs-echo"]
    kinds = sorted(s["kind"] for s in entries)
    assert kinds == ["consumer", "server"]
    server = next(s for s in entries if s["kind"] == "server")
    consumer = next(s for s in entries if s["kind"] == "consumer")
    assert consumer["parent_span_id"] == server["span_id"]


def test_spans_are_exported_over_otlp(squall: SquallProcess, lam: Any) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    trace_id = "6bf92f3577b34da6a3ce929d0e0e4738"
    _with_header(lam, "traceparent", f"00-{trace_id}-{CALLER_SPAN}-01").invoke(FunctionName="obs-echo", Payload=b"{}")

    def exported() -> Any:
        names = set()
        for path, ctype, body in list(_Receiver.got):
            assert path == "/v1/traces"
            assert ctype == "application/x-protobuf"
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                assert service == "squall"
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        if span.trace_id.hex() == trace_id:
                            names.add(span.name)
        return names if {"Invoke obs-echo", "invoker", "instance"} <= names else None

    eventually(exported, timeout_s=30, what="spans of the trace at the OTLP receiver")


def test_function_urls_continue_and_return_the_trace(squall: SquallProcess, lam: Any) -> None:
    trace_id = "8bf92f3577b34da6a3ce929d0e0e473a"
    url = lam.create_function_url_config(FunctionName="obs-echo", AuthType="NONE")["FunctionUrl"]
    req = urllib.request.Request(url + "path", headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        tp = resp.headers["traceparent"]
        request_id = resp.headers["x-amzn-RequestId"]
    assert tp.startswith(f"00-{trace_id}-")
    trace = _trace_of(squall, request_id)
    entry = next(s for s in trace["spans"] if s["name"] == "Invoke obs-echo")
    assert entry["span_id"] == tp.split("-")[2] and entry["kind"] == "server"
    assert entry["attributes"]["faas.trigger"] == "http"
    assert {"invoker", "instance"} <= {s["name"] for s in trace["spans"]}


def test_default_sampling_keeps_a_few_traces_of_a_burst_and_every_call_gets_its_context(
    squall: SquallProcess, lam: Any
) -> None:
    """X-Ray's default rule: of a quick burst to one function, the first of each second and ~5% of the rest are
    traced; every invocation still gets a trace context (flags 01 or 00) in the response and in the function."""
    create(lam, "obs-burst", CONTEXT)
    lam.invoke(FunctionName="obs-burst", Payload=b"{}")  # cold start out of the way
    warm_up_second = int(time.time())  # (the server's reservoir counts seconds of the same clock)
    # a fresh second: the warm-up spent the reservoir of its own
    eventually(lambda: int(time.time()) > warm_up_second, timeout_s=5, interval_s=0.01, what="a fresh second")
    first_second = int(time.time())
    calls = []
    for _ in range(30):
        resp = lam.invoke(FunctionName="obs-burst", Payload=b"{}")
        seen = json.loads(resp["Payload"].read())
        calls.append((resp["ResponseMetadata"]["HTTPHeaders"]["traceparent"], seen, resp["ResponseMetadata"]))
    seconds = int(time.time()) - first_second + 1
    sampled: set[str] = set()
    for tp, seen, _meta in calls:
        _, trace_id, _, flags = tp.split("-")
        assert flags in ("01", "00"), tp
        # the function saw the same trace and decision, in both formats (as Lambda: Sampled=0 when not traced)
        assert seen["traceparent"].startswith(f"00-{trace_id}-") and seen["traceparent"].endswith(f"-{flags}")
        assert seen["amzn"].startswith(f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent=")
        assert seen["amzn"].endswith(";Sampled=1" if flags == "01" else ";Sampled=0")
        if flags == "01":
            sampled.add(trace_id)
    # at least the reservoir's one of the first second; far fewer than all (1 per second spanned + ~5% of 30)
    assert 1 <= len(sampled) <= seconds + 8 and len(sampled) < 30, (len(sampled), seconds)

    status, listed = signed_get(squall.url, "/_squall/api/traces?function=obs-burst&limit=1000")
    assert status == 200
    stored = {t["trace_id"] for t in listed["traces"]}
    assert sampled <= stored and len(stored - sampled) <= 1, (stored, sampled)  # (+ the warm-up's own trace)
    # an unsampled invocation: no trace, and the API says since when a missing trace means "not sampled"
    tp, _, meta = next(c for c in calls if c[0].endswith("-00"))
    status, body = signed_get(squall.url, f"/_squall/api/traces?request_id={meta['RequestId']}")
    assert status == 200 and body["traces"] == [] and body["sampling"] == {"reservoir_per_s": 1, "ratio": 0.05}
    assert body["kept_since"] < first_second
