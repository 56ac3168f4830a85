"""Metrics (Prometheus, ``/metrics``) and traces (OpenTelemetry spans, OTLP export, a local trace store)."""
