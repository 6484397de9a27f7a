"""Where telemetry goes, chosen once per process from the environment the SDKs read.

- APPLICATIONINSIGHTS_CONNECTION_STRING set: the Azure Monitor OpenTelemetry distro (Application Insights).
  With APPLICATIONINSIGHTS_AUTHENTICATION_STRING `Authorization=AAD` (what infra/ sets, and what the Functions
  host reads for its own telemetry), it signs in with Entra ID as the managed identity (`ClientId=` there,
  else AZURE_CLIENT_ID); the resource's local authentication can then stay off. Without it, the connection
  string's instrumentation key is the only credential (a resource that allows local authentication).
- Else OTEL_EXPORTER_OTLP_ENDPOINT (or a signal's own OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT) set: OTLP over
  HTTP/protobuf, configured by the standard variables, which the SDK reads itself: OTEL_EXPORTER_OTLP_HEADERS,
  _TIMEOUT, _COMPRESSION, OTEL_METRIC_EXPORT_INTERVAL, OTEL_BSP_SCHEDULE_DELAY, OTEL_SERVICE_NAME,
  OTEL_RESOURCE_ATTRIBUTES... OTEL_EXPORTER_OTLP_PROTOCOL may only be `http/protobuf` (the one exporter
  installed): another value turns telemetry off with a warning naming it, rather than send what the
  collector's port does not speak.
- Else nothing (and OTEL_SDK_DISABLED=true means nothing in every case). OTEL_TRACES_EXPORTER,
  OTEL_METRICS_EXPORTER and OTEL_LOGS_EXPORTER set to `none` turn one signal off.

What is sent: the app's own spans and metrics (shared.telemetry.spans and .instruments), and the lines of the
app's loggers (`shared.*`), each with the trace and span ids of the span it was written in. No library is
instrumented: the distro's instrumentations (HTTP clients, the Azure SDK, FastAPI) would record request URLs,
which carry SAS tokens and `?code=` function keys. A log record's extra fields (log_event's `ctx_*`) are
redacted as its message is, before any exporter sees them, and a log handler that fails loses the line, never
the caller's work (SafeLogHandler).

The connection string, the endpoint's headers and any token are never logged; the start line names only the
kind of exporter and, for Entra ID, the identity's client id.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

SERVICE_NAME = "azure-blob-export"
LOGGER_NAME = "shared"  # the app's loggers: their lines are sent, correlated with the span they were written in
SIGNALS = ("traces", "metrics", "logs")
OTLP_PROTOCOL = "http/protobuf"
# Every instrumentation the distro would turn on: all off (see the module docstring).
DISTRO_INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "httpx2", "psycopg2", "requests",
                           "urllib", "urllib3")

Exporter = Literal["azure_monitor", "otlp", "none"]
Redact = Callable[[str], str]


@dataclass(frozen=True)
class TelemetryPlan:
    """What configure_telemetry does, decided from the environment alone (no I/O)."""

    exporter: Exporter
    words: str  # for the start line: never a connection string, a header or a token
    signals: tuple[str, ...] = ()
    connection_string: str | None = field(default=None, repr=False)
    entra: bool = False
    client_id: str | None = None  # the managed identity's (None: the system-assigned one)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _pairs(text: str) -> dict[str, str]:
    """`Key=value;Key=value` (a connection or authentication string), keys lower-cased."""
    found = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            found[key.strip().lower()] = value.strip()
    return found


def _signals(environ: Mapping[str, str], available: Callable[[str], bool]) -> tuple[str, ...]:
    return tuple(signal for signal in SIGNALS
                 if environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() != "none" and available(signal))


def plan_telemetry(environ: Mapping[str, str]) -> TelemetryPlan:
    """Where telemetry goes, from the variables the SDKs read (see the module docstring)."""
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return TelemetryPlan("none", "off (OTEL_SDK_DISABLED=true)")
    connection = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if connection:
        signals = _signals(environ, lambda signal: True)
        auth = _pairs(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""))
        if auth.get("authorization", "").upper() == "AAD":
            client_id = auth.get("clientid") or environ.get("AZURE_CLIENT_ID") or None
            who = f"managed identity {client_id}" if client_id else "the system-assigned managed identity"
            return TelemetryPlan("azure_monitor", f"Azure Monitor (Application Insights), Entra ID as {who}",
                                 signals, connection, entra=True, client_id=client_id)
        return TelemetryPlan("azure_monitor", "Azure Monitor (Application Insights), instrumentation key",
                             signals, connection)

    def has_endpoint(signal: str) -> bool:
        return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
                    or environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip())

    signals = _signals(environ, has_endpoint)
    if not signals:
        return TelemetryPlan("none", "off (set APPLICATIONINSIGHTS_CONNECTION_STRING or OTEL_EXPORTER_OTLP_ENDPOINT)")
    for name in ["OTEL_EXPORTER_OTLP_PROTOCOL", *(f"OTEL_EXPORTER_OTLP_{s.upper()}_PROTOCOL" for s in signals)]:
        protocol = environ.get(name, "").strip()
        if protocol and protocol != OTLP_PROTOCOL:
            return TelemetryPlan("none", f"off: {name}={protocol!r} is not supported, only {OTLP_PROTOCOL!r} "
                                         "(OTLP over HTTP, usually port 4318)")
    return TelemetryPlan("otlp", f"OTLP over HTTP/protobuf ({', '.join(signals)})", signals)


_lock = threading.Lock()
_configured: list[TelemetryPlan] = []


def configure_telemetry(redact: Redact, environ: Mapping[str, str] | None = None) -> TelemetryPlan:
    """Configure telemetry for this process, once (a second call returns the first's plan). `redact` blanks
    secrets in log text (shared.logging_setup.redact): it is applied to the extra fields of each log record sent.
    A failure to configure is logged by its type and leaves telemetry off: it never stops the app."""
    with _lock:
        if _configured:
            return _configured[0]
        plan = plan_telemetry(os.environ if environ is None else environ)
        try:
            if plan.exporter == "azure_monitor":
                _configure_azure_monitor(plan, redact)
            elif plan.exporter == "otlp":
                _configure_otlp(plan, redact)
        except Exception as exc:
            log.warning("telemetry not configured (%s): it stays off", type(exc).__name__)
            plan = TelemetryPlan("none", f"off: configuring {plan.exporter} failed ({type(exc).__name__})")
        _configured.append(plan)
    level = logging.WARNING if plan.exporter == "none" and plan.words.startswith("off:") else logging.INFO
    log.log(level, "telemetry: %s", plan.words)
    return plan


def resource() -> Resource:
    """The service's resource: OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES when they name it, else ours."""
    found = Resource.create()
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        found = found.merge(Resource({"service.name": SERVICE_NAME}))
    return found


def _configure_azure_monitor(plan: TelemetryPlan, redact: Redact) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    options: dict[str, Any] = {
        "connection_string": plan.connection_string,
        "logger_name": LOGGER_NAME,
        "instrumentation_options": {name: {"enabled": False} for name in DISTRO_INSTRUMENTATIONS},
        "resource": resource(),
        "disable_tracing": "traces" not in plan.signals,
        "disable_metrics": "metrics" not in plan.signals,
        "disable_logging": "logs" not in plan.signals,
    }
    if plan.entra:
        options["credential"] = ManagedIdentityCredential(client_id=plan.client_id)
    configure_azure_monitor(**options)
    wrap_log_handlers(redact)


def _configure_otlp(plan: TelemetryPlan, redact: Redact) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = resource()
    tracer_provider = meter_provider = logger_provider = None
    if "traces" in plan.signals:  # BatchSpanProcessor reads OTEL_BSP_*; the exporters read OTEL_EXPORTER_OTLP_*
        tracer_provider = TracerProvider(resource=service)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "metrics" in plan.signals:  # the reader reads OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT
        meter_provider = MeterProvider(resource=service,
                                       metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    if "logs" in plan.signals:  # OTEL_BLRP_*
        logger_provider = LoggerProvider(resource=service)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    install_providers(redact, tracer_provider=tracer_provider, meter_provider=meter_provider,
                      logger_provider=logger_provider)


def install_providers(redact: Redact, *, tracer_provider: TracerProvider | None = None,
                      meter_provider: MeterProvider | None = None,
                      logger_provider: LoggerProvider | None = None) -> None:
    """Make these the process's providers, and send the app's log lines through `logger_provider` (the OTLP
    path, and the tests with in-memory exporters)."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    if tracer_provider is not None:
        trace.set_tracer_provider(tracer_provider)
    if meter_provider is not None:
        metrics.set_meter_provider(meter_provider)
    if logger_provider is not None:
        set_logger_provider(logger_provider)
        logging.getLogger(LOGGER_NAME).addHandler(LoggingHandler(logger_provider=logger_provider))
        wrap_log_handlers(redact)


class SafeLogHandler(logging.Handler):
    """An OpenTelemetry log handler, wrapped: each record's extra fields (strings) are redacted in a copy, as the
    record factory redacts its message (an OpenTelemetry handler sends those fields as attributes, which the
    factory never sees), and nothing it raises reaches the code that logged (its own emit catches nothing)."""

    STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def __init__(self, inner: logging.Handler, redact: Redact) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.redact = redact

    def emit(self, record: logging.LogRecord) -> None:
        try:
            copy = logging.makeLogRecord(vars(record))
            for name, value in vars(record).items():
                if name not in self.STANDARD and isinstance(value, str):
                    setattr(copy, name, self.redact(value))
            self.inner.emit(copy)
        except Exception:  # a lost log line, never a failed intake or export
            return

    def flush(self) -> None:
        try:
            self.inner.flush()
        except Exception:
            return


def wrap_log_handlers(redact: Redact) -> None:
    """Wrap every OpenTelemetry log handler of the app's loggers in SafeLogHandler (the distro adds its own)."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, LoggingHandler):
            logger.removeHandler(handler)
            logger.addHandler(SafeLogHandler(handler, redact))
