"""OpenTelemetry's in-memory exporters as the process's providers, for the tests that read what the app sends.

The providers are installed once per session (a process has one of each) with install_providers, the function
the OTLP path uses, so the app's log lines reach them through the same wrapped handler. Spans and log records
are kept only while a test holds the `captured` fixture (between tests nothing is kept); metrics are read with
delta temporality, so each read returns what was recorded since the one before. At the end of each test, every
span, metric point and log record it saw is handed to the secret watch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter,
    ExemplarFilter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.logging_setup import redact
from shared.telemetry.setup import install_providers
from tests.support import secret_watch


class Broken(RuntimeError):
    """What a faulty telemetry plug-in raises."""


class _Switches:
    def __init__(self) -> None:
        self.recording = threading.Event()
        self.faulty = threading.Event()


class _Recording(SpanProcessor):
    """Passes spans on while a test records; raises from every hook while the fault is switched on."""

    def __init__(self, inner: SpanProcessor, switches: _Switches) -> None:
        self.inner, self.switches = inner, switches

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.switches.faulty.is_set():
            raise Broken("span processor on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.switches.faulty.is_set():
            raise Broken("span processor on_end")
        if self.switches.recording.is_set():
            self.inner.on_end(span)


class _RecordingLogs(LogRecordProcessor):
    def __init__(self, inner: LogRecordProcessor, switches: _Switches) -> None:
        self.inner, self.switches = inner, switches

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.switches.faulty.is_set():
            raise Broken("log record processor")
        if self.switches.recording.is_set():
            self.inner.on_emit(log_record)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _SwitchedExemplars(ExemplarFilter):
    """Consulted on every measurement: raises while the fault is switched on, as a broken metrics plug-in would."""

    def __init__(self, switches: _Switches) -> None:
        self.switches, self.inner = switches, TraceBasedExemplarFilter()

    def should_sample(self, value: Any, time_unix_nano: int, attributes: Any, context: Any) -> bool:
        if self.switches.faulty.is_set():
            raise Broken("metric measurement")
        return self.inner.should_sample(value, time_unix_nano, attributes, context)


@dataclass
class Captured:
    """What the app sent while the test ran."""

    spans_exporter: InMemorySpanExporter
    logs_exporter: InMemoryLogRecordExporter
    reader: InMemoryMetricReader
    switches: _Switches
    metric_points: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans_exporter.get_finished_spans() if name is None or s.name == name]

    def logs(self) -> list[Any]:
        return list(self.logs_exporter.get_finished_logs())

    def read_metrics(self) -> list[tuple[str, dict[str, Any], Any]]:
        """(metric name, attributes, point) recorded since the last read."""
        data = self.reader.get_metrics_data()
        points = [(metric.name, dict(point.attributes or {}), point)
                  for resource in (data.resource_metrics if data else [])
                  for scope in resource.scope_metrics for metric in scope.metrics
                  for point in metric.data.data_points]
        self.metric_points.extend(points)
        return points

    def sums(self, points: list[tuple[str, dict[str, Any], Any]], name: str) -> dict[tuple[str, ...], float]:
        """A counter's values in `points`, by its attributes' values (sorted by attribute name)."""
        found: dict[tuple[str, ...], float] = {}
        for metric, attributes, point in points:
            if metric == name and getattr(point, "value", 0):
                key = tuple(str(attributes[k]) for k in sorted(attributes))
                found[key] = found.get(key, 0) + point.value
        return found


def _watch(captured: Captured, where: str) -> None:
    """Every span, metric point and log record the test saw, as text for the secret watch."""
    for span in captured.spans():
        secret_watch.observe(f"{where}: span {span.name}", span.to_json())
    for name, attributes, point in captured.metric_points:
        secret_watch.observe(f"{where}: metric {name}", f"{attributes!r} {point!r}")
    for record in captured.logs():
        secret_watch.observe(f"{where}: log record", record.to_json())


@pytest.fixture(scope="session")
def _telemetry_session() -> Captured:
    switches = _Switches()
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta, ObservableGauge: delta})
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(_Recording(SimpleSpanProcessor(spans), switches))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(_RecordingLogs(SimpleLogRecordProcessor(logs), switches))
    meter_provider = MeterProvider(metric_readers=[reader], exemplar_filter=_SwitchedExemplars(switches))
    install_providers(redact, tracer_provider=tracer_provider, meter_provider=meter_provider,
                      logger_provider=logger_provider)
    return Captured(spans, logs, reader, switches)


@pytest.fixture
def captured(_telemetry_session: Captured, request: pytest.FixtureRequest) -> Iterator[Captured]:
    """What the app sends during this test (spans, logs; metrics by `read_metrics`), watched for secrets."""
    captured = _telemetry_session
    captured.read_metrics()  # what earlier tests recorded is not this test's
    captured.metric_points.clear()
    captured.spans_exporter.clear()
    captured.logs_exporter.clear()
    captured.switches.recording.set()
    try:
        yield captured
    finally:
        captured.switches.recording.clear()
        captured.switches.faulty.clear()
        captured.read_metrics()
        _watch(captured, request.node.nodeid)
        captured.spans_exporter.clear()
        captured.logs_exporter.clear()
        captured.metric_points.clear()
