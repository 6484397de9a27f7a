"""Where telemetry goes: the choice from the environment (a table of cases), then each path for real, in a
`make serve` process of its own (a process has one set of providers): OTLP over HTTP/protobuf to a collector
that decodes what it receives, an OTLP collector that fails every request (the batch lands all the same), and
Application Insights' ingestion endpoint reached with an Entra ID token of the managed identity."""

from __future__ import annotations

import gzip
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from scripts import sample_data
from shared.telemetry.setup import TelemetryPlan, plan_telemetry
from tests.scripts.test_serve import serving
from tests.support import secret_watch
from tests.support.azurite import Azurite
from tests.support.http_servers import running_server
from tests.support.keyvault import KeyVaultTLS
from tests.support.managed_identity import FakeManagedIdentity
from tests.support.sas import container_sas, sas_destination

CONNECTION = "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://x.example/"
OTLP = "http://127.0.0.1:4318"

PLANS: list[tuple[dict[str, str], str, tuple[str, ...], str]] = [
    ({}, "none", (), "set APPLICATIONINSIGHTS_CONNECTION_STRING or OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}, "azure_monitor", ("traces", "metrics", "logs"),
     "instrumentation key"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
      "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=c-1"}, "azure_monitor",
     ("traces", "metrics", "logs"), "Entra ID as managed identity c-1"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "AZURE_CLIENT_ID": "c-2",
      "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"}, "azure_monitor",
     ("traces", "metrics", "logs"), "Entra ID as managed identity c-2"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
      "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "authorization=aad"}, "azure_monitor",
     ("traces", "metrics", "logs"), "the system-assigned managed identity"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP,
      "OTEL_LOGS_EXPORTER": "none"}, "azure_monitor", ("traces", "metrics"), "Application Insights"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP}, "otlp", ("traces", "metrics", "logs"), "HTTP/protobuf"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP, "OTEL_METRICS_EXPORTER": "none"}, "otlp", ("traces", "logs"), "traces"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{OTLP}/v1/traces"}, "otlp", ("traces",), "traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp",
     ("traces", "metrics", "logs"), "HTTP/protobuf"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "none", (),
     "OTEL_EXPORTER_OTLP_PROTOCOL='grpc' is not supported"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": OTLP, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "none", (),
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "OTEL_SDK_DISABLED": "true"}, "none", (),
     "OTEL_SDK_DISABLED"),
]


@pytest.mark.parametrize(("environ", "exporter", "signals", "words"), PLANS)
def test_the_environment_chooses_where_telemetry_goes(
    environ: dict[str, str], exporter: str, signals: tuple[str, ...], words: str
) -> None:
    plan = plan_telemetry(environ)
    assert (plan.exporter, plan.signals) == (exporter, signals)
    assert words in plan.words
    assert "InstrumentationKey" not in plan.words and "InstrumentationKey" not in repr(plan)


def test_a_plan_never_shows_its_connection_string() -> None:
    plan = TelemetryPlan("azure_monitor", "x", connection_string=CONNECTION)
    assert CONNECTION not in repr(plan) and CONNECTION not in str(plan)


# --- Each path, for real, in `make serve` --------------------------------------------------------------------


@dataclass
class Collector:
    """An OTLP/HTTP collector: decodes each request to /v1/traces, /v1/metrics and /v1/logs."""

    server: HTTPServer
    status: int = 200
    spans: list[Any] = field(default_factory=list)
    metrics: list[Any] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path, message, into in [("/v1/traces", ExportTraceServiceRequest, self.spans),
                                    ("/v1/metrics", ExportMetricsServiceRequest, self.metrics),
                                    ("/v1/logs", ExportLogsServiceRequest, self.logs)]:
            self.server.expect_request(path, method="POST").respond_with_handler(self._handler(message, into))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def _handler(self, message: Any, into: list[Any]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            body = request.get_data()
            if request.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            self.headers.append(dict(request.headers))
            self.bodies.append(body)
            if self.status != 200:
                return Response(b"", status=self.status)
            decoded = message()
            decoded.ParseFromString(body)
            into.append(decoded)
            return Response(b"", status=200, content_type="application/x-protobuf")

        return handle

    def span_list(self) -> list[Any]:
        return [s for r in self.spans for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def metric_names(self) -> set[str]:
        return {m.name for r in self.metrics for rm in r.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics}

    def log_list(self) -> list[Any]:
        return [lr for r in self.logs for rl in r.resource_logs for sl in rl.scope_logs for lr in sl.log_records]

    def service_names(self) -> set[str]:
        return {a.value.string_value for r in self.spans for rs in r.resource_spans for a in rs.resource.attributes
                if a.key == "service.name"}


@pytest.fixture
def collector() -> Iterator[Collector]:
    with running_server() as server:
        yield Collector(server)


def attrs(item: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in item.attributes}


def _poke_every(seconds: float, tick: int, base_url: str) -> bool:
    """Called about every 0.2 s while waiting: every `seconds`, post one more batch (its spans make the exporter
    send, and send again what it failed to send). Never satisfies the wait itself."""
    if tick and tick % int(seconds / 0.2) == 0:
        with httpx.Client(base_url=base_url, timeout=30) as api:
            lines = json.dumps({"event": "poke", "ts": 1763629200}).encode() + b"\n"
            api.post("/api/destinations/acme/batches", params={"type": "events"}, content=lines,
                     headers={"content-type": "application/x-ndjson"})
    return False


def wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds:g} s")
        time.sleep(0.2)


def export_one_batch(base_url: str, azurite: Azurite, blob_service: BlobServiceClient, records: int) -> str:
    """A destination, a batch posted to it, and the batch landed (the serve process's queue consumer)."""
    container = blob_service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    body = sas_destination(azurite.account_url, container.container_name, container_sas(container.container_name))
    with httpx.Client(base_url=base_url, timeout=30) as api:
        assert api.put("/api/destinations/acme", json=body).status_code == 201
        lines = b"".join(json.dumps(r).encode() + b"\n" for r in sample_data.events(records, seed=5))
        posted = api.post("/api/destinations/acme/batches", params={"type": "events"}, content=lines,
                          headers={"content-type": "application/x-ndjson"})
        assert posted.status_code == 202, posted.text
        batch_id = str(posted.json()["batch_id"])
        wait_for("landing", lambda: api.get(f"/api/batches/{batch_id}").json()["state"] == "landed")
    return batch_id


FAST = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "", "OTEL_SDK_DISABLED": ""}


def test_make_serve_sends_its_spans_metrics_and_logs_over_otlp_http(
    collector: Collector, azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    token = secret_watch.register(f"collector-token-{uuid.uuid4().hex}", "OTLP header") or ""
    with serving(azurite, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                 OTEL_EXPORTER_OTLP_HEADERS=f"x-collector-token={token}", OTEL_SERVICE_NAME="export-under-test",
                 **FAST) as (base_url, _, log):
        batch_id = export_one_batch(base_url, azurite, blob_service, records=7)
        wait_for("export span", lambda: any(s.name == "export batch" for s in collector.span_list()))
        wait_for("landed counter", lambda: "export.records.landed" in collector.metric_names())
        wait_for("'batch landed' log", lambda: any(lr.body.string_value.startswith("batch landed ")
                                                     for lr in collector.log_list()))
        assert "telemetry: OTLP over HTTP/protobuf (traces, metrics, logs)" in log.read_text()
    spans = {s.name: s for s in collector.span_list()}
    assert attrs(spans["intake batch"])["batch_id"] == batch_id and attrs(spans["intake batch"])["records"] == 7
    export = spans["export batch"]
    assert attrs(export)["outcome"] == "landed" and attrs(export)["destination_id"] == "acme"
    assert collector.service_names() == {"export-under-test"}  # OTEL_SERVICE_NAME, honoured
    landed = next(lr for lr in collector.log_list() if lr.body.string_value.startswith("batch landed "))
    assert (landed.trace_id, landed.span_id) == (export.trace_id, export.span_id)
    assert {"export.records.accepted", "export.lag", "export.duration", "export.bytes.written"} <= \
        collector.metric_names()
    assert all(h.get("X-Collector-Token") == token for h in collector.headers)  # OTEL_EXPORTER_OTLP_HEADERS
    for body in collector.bodies:  # the SAS of the destination, in no request: the session watch checks it too
        secret_watch.observe("OTLP request body", body.decode("latin-1"))
    assert not [leak for leak in secret_watch.leaks() if "OTLP request body" in leak]


def test_a_collector_that_fails_every_request_costs_the_export_nothing(
    collector: Collector, azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    collector.status = 503
    with serving(azurite, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, **FAST) as (base_url, process, _):
        export_one_batch(base_url, azurite, blob_service, records=3)
        wait_for("an export attempt", lambda: len(collector.bodies) >= 2)
        assert process.poll() is None


def test_application_insights_gets_the_telemetry_with_an_entra_token_of_the_managed_identity(
    fake_managed_identity: FakeManagedIdentity, key_vault_tls: KeyVaultTLS, azurite: Azurite,
    blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    """The connection string names a local ingestion endpoint (HTTPS with a test CA: a bearer token is never sent
    over plain HTTP); APPLICATIONINSIGHTS_AUTHENTICATION_STRING asks for Entra ID with the identity's client id,
    as infra/ sets it. Every envelope arrives with a bearer token for Azure Monitor, which the identity endpoint
    issued for that client id, and each span's log lines share its operation id."""
    received: list[tuple[dict[str, str], list[dict[str, Any]]]] = []

    def track(request: Request) -> Response:
        body = request.get_data()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        envelopes = json.loads(body)
        received.append((dict(request.headers), envelopes if isinstance(envelopes, list) else [envelopes]))
        count = len(received[-1][1])
        return Response(json.dumps({"itemsReceived": count, "itemsAccepted": count, "errors": []}),
                        content_type="application/json")

    client_id = str(uuid.uuid4())
    with running_server("localhost", ssl_context=key_vault_tls.server_context) as ingestion:
        ingestion.expect_request("/v2.1/track", method="POST").respond_with_handler(track)
        connection = (f"InstrumentationKey={uuid.uuid4()};IngestionEndpoint=https://localhost:{ingestion.port}/;"
                      f"LiveEndpoint=https://localhost:{ingestion.port}/")
        settings = {**FAST, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
                    "REQUESTS_CA_BUNDLE": str(key_vault_tls.ca_path),
                    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={client_id}",
                    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                    # Every trace: the distro's default sampler keeps about 5 a second and adapts within 0.1 s,
                    # so two traces that start close together may lose one.
                    "OTEL_TRACES_SAMPLER": "always_on"}
        with serving(azurite, tmp_path, **settings) as (base_url, _, log):
            batch_id = export_one_batch(base_url, azurite, blob_service, records=4)

            def names() -> set[str]:
                return {e.get("data", {}).get("baseData", {}).get("name", "") for _, es in received for e in es}

            # Spans arrive in the exporter's batches, not in the order they ended: wait for both that are read. A
            # batch of spans the exporter failed to send (a busy machine) is sent again only with its next batch:
            # another POST every 20 s makes one.
            pokes = itertools.count()
            wait_for("the intake's and the export's spans", lambda: {"intake batch", "export batch"} <= names()
                     or _poke_every(20, next(pokes), base_url))
            wait_for("the landed counter", lambda: "export.records.landed" in json.dumps(
                [e for _, es in received for e in es if e.get("name", "").endswith("Metric")]))
            assert f"Entra ID as managed identity {client_id}" in log.read_text()
    envelopes = [e for _, es in received for e in es]
    spans = {e["data"]["baseData"]["name"]: e for e in envelopes if e["name"].endswith(("Request", "RemoteDependency"))}
    export = next(e for e in envelopes if e["data"]["baseData"].get("name") == "export batch"
                  and e["data"]["baseData"]["properties"]["batch_id"] == batch_id)
    assert export["data"]["baseData"]["properties"]["outcome"] == "landed"
    assert spans["intake batch"]["name"].endswith("Request")  # the intake span is a server span: a request
    messages = [e for e in envelopes if e["name"].endswith("Message")
                and e["data"]["baseData"]["message"].startswith("batch landed ")]
    assert any(m["tags"]["ai.operation.id"] == export["tags"]["ai.operation.id"] for m in messages)
    assert all(h.get("Authorization", "").startswith("Bearer ") for h, _ in received)
    tokens = {h["Authorization"].removeprefix("Bearer ") for h, _ in received}
    monitor = "https://monitor.azure.com/"  # the distro's scope, https://monitor.azure.com//.default
    assert {fake_managed_identity.resource_of(t) for t in tokens} == {monitor}
    assert {r.client_id for r in fake_managed_identity.requests if r.resource == monitor} == {client_id}
    for _, batch in received:
        secret_watch.observe("Application Insights envelopes", json.dumps(batch))
