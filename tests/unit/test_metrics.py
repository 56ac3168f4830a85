"""Metric names, labels and values with a real prometheus_client registry."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from squall.core.config import ServerConfig
from squall.core.model import InvokeOutcome
from squall.telemetry.metrics import Metrics, StateSnapshot
from squall.telemetry.setup import Observability


def outcome(duration_ms: float = 2.0, cold: bool = False, init_ms: float | None = None) -> InvokeOutcome:
    return InvokeOutcome("rid", b"{}", None, duration_ms, 3, init_ms, 10, 128, "", cold, "i-1")


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


def test_invocations_errors_throttles_durations_and_cold_starts() -> None:
    m = Metrics(process=False)
    m.observe("f", "lambda-api", outcome(2.0, cold=True, init_ms=150.0), "ok")
    m.observe("f", "lambda-api", outcome(20.0), "ok")
    m.observe("f", "lambda-api", outcome(3000.0), "timeout")
    m.observe("f", "lambda-api", outcome(1.0), "error")
    m.observe("f", "lambda-api", None, "throttled")
    m.observe("g", "lambda-api", None, "error", init_ms=80.0)  # init failed
    assert value(m, "squall_invocations_total", function="f", status="ok") == 2
    assert value(m, "squall_invocations_total", function="f", status="timeout") == 1
    assert value(m, "squall_invocations_total", function="f", status="error") == 1
    assert value(m, "squall_invocations_total", function="f", status="throttled") is None
    assert value(m, "squall_invocation_errors_total", function="f") == 2
    assert value(m, "squall_throttles_total", function="f") == 1
    assert value(m, "squall_cold_starts_total", function="f") == 1
    assert value(m, "squall_cold_starts_total", function="g") == 1
    assert value(m, "squall_invocation_duration_seconds_count", function="f") == 4
    assert value(m, "squall_invocation_duration_seconds_sum", function="f") == pytest.approx(3.023)
    assert value(m, "squall_invocation_duration_seconds_bucket", function="f", le="0.0025") == 2
    assert value(m, "squall_invocation_duration_seconds_bucket", function="f", le="0.025") == 3
    assert value(m, "squall_invocation_duration_seconds_bucket", function="f", le="+Inf") == 4
    assert value(m, "squall_init_duration_seconds_count", function="f") == 1
    assert value(m, "squall_init_duration_seconds_sum", function="f") == pytest.approx(0.15)
    assert value(m, "squall_init_duration_seconds_count", function="g") == 1
    assert value(m, "squall_invocation_duration_seconds_count", function="g") == 0


def test_event_source_deliveries_by_source_and_outcome() -> None:
    m = Metrics(process=False)
    m.observe("f", "sqs", outcome(), "ok")
    m.observe("f", "sqs", outcome(), "error")
    m.observe("f", "s3", outcome(), "ok")
    m.observe("f", "s3", None, "throttled")
    m.observe("f", "schedule", outcome(), "ok")
    m.observe("f", "lambda-api", outcome(), "ok")  # not an event source
    assert value(m, "squall_event_deliveries_total", source="sqs", outcome="ok") == 1
    assert value(m, "squall_event_deliveries_total", source="sqs", outcome="error") == 1
    assert value(m, "squall_event_deliveries_total", source="s3", outcome="ok") == 1
    assert value(m, "squall_event_deliveries_total", source="s3", outcome="throttled") == 1
    assert value(m, "squall_event_deliveries_total", source="schedule", outcome="ok") == 1
    assert value(m, "squall_event_deliveries_total", source="lambda-api", outcome="ok") is None


def test_state_gauges_are_read_at_scrape_time() -> None:
    state = StateSnapshot(
        instances=[("f", "busy"), ("f", "starting"), ("f", "idle"), ("g", "idle"), ("g", "idle"), ("h", "stopping")],
        zygotes=2,
        async_queue_depth=7,
        async_event_age_s=12.5,
        async_succeeded=3,
        async_failed=1,
        node_memory_bytes=123456,
        prewarms=4,
    )
    calls = []

    def snapshot() -> StateSnapshot:
        calls.append(1)
        return state

    m = Metrics(snapshot, process=False)
    assert calls == []  # nothing is computed until a scrape
    assert value(m, "squall_concurrent_executions", function="f") == 2
    assert value(m, "squall_concurrent_executions", function="g") == 0
    assert value(m, "squall_warm_instances", function="f") == 1
    assert value(m, "squall_warm_instances", function="g") == 2
    assert value(m, "squall_warm_instances", function="h") == 0
    assert value(m, "squall_zygotes_loaded") == 2
    assert value(m, "squall_async_queue_depth") == 7
    assert value(m, "squall_async_event_age_seconds") == 12.5
    assert value(m, "squall_async_events_finished_total", outcome="success") == 3
    assert value(m, "squall_async_events_finished_total", outcome="failure") == 1
    assert value(m, "squall_node_memory_bytes") == 123456
    assert value(m, "squall_prewarms_total") == 4
    state.async_queue_depth = 0
    assert value(m, "squall_async_queue_depth") == 0


def test_a_failing_state_read_does_not_break_the_scrape() -> None:
    def broken() -> StateSnapshot:
        raise RuntimeError("store closed")

    m = Metrics(broken, process=False)
    m.observe("f", "lambda-api", outcome(), "ok")
    assert value(m, "squall_invocations_total", function="f", status="ok") == 1
    assert value(m, "squall_async_queue_depth") is None


def test_registries_are_private_per_server() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.observe("f", "lambda-api", outcome(), "ok")
    assert value(a, "squall_invocations_total", function="f", status="ok") == 1
    assert value(b, "squall_invocations_total", function="f", status="ok") is None


def test_process_metrics_and_help_text_follow_conventions() -> None:
    m = Metrics()
    text = m.exposition().decode()
    assert "# TYPE squall_invocations_total counter" in text
    assert "# TYPE squall_invocation_duration_seconds histogram" in text
    assert "process_cpu_seconds_total" in text or "process_" not in text  # absent on platforms without /proc


def test_metrics_path_is_public_only_when_asked() -> None:
    assert Observability(metrics=Metrics(process=False)).public_prefixes == ()
    assert Observability(metrics=Metrics(process=False), metrics_public=True).public_prefixes == ("/metrics",)
    assert Observability(metrics=None, metrics_public=True).public_prefixes == ()


def test_config_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in (
        "SQUALL_METRICS", "SQUALL_TRACING", "SQUALL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT",
        "SQUALL_TRACE_SAMPLE", "SQUALL_TRACE_RESERVOIR",
    ):  # fmt: skip
        monkeypatch.delenv(k, raising=False)
    c = ServerConfig()
    assert (c.metrics, c.tracing, c.metrics_public, c.otlp_endpoint) == (True, True, False, "")
    assert (c.trace_sample, c.trace_reservoir) == (0.05, 1)  # X-Ray's default rule: 1 per second + 5%
    monkeypatch.setenv("SQUALL_METRICS", "0")
    monkeypatch.setenv("SQUALL_TRACING", "false")
    monkeypatch.setenv("SQUALL_METRICS_PUBLIC", "1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("SQUALL_TRACE_SAMPLE", "0.25")
    monkeypatch.setenv("SQUALL_TRACE_BUFFER", "10")
    monkeypatch.setenv("SQUALL_TRACE_RESERVOIR", "3")
    c = ServerConfig()
    assert (c.metrics, c.tracing, c.metrics_public, c.otlp_endpoint) == (False, False, True, "http://127.0.0.1:4318")
    assert (c.trace_sample, c.trace_buffer, c.trace_reservoir) == (0.25, 10, 3)
    monkeypatch.setenv("SQUALL_TRACE_RESERVOIR", "-2")
    assert ServerConfig().trace_reservoir == 0
    monkeypatch.setenv("SQUALL_OTLP_ENDPOINT", "http://127.0.0.1:9999")
    assert ServerConfig().otlp_endpoint == "http://127.0.0.1:9999"
