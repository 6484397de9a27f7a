"""What the app sends while it works, read with OpenTelemetry's in-memory exporters (conftest): an intake and an
export through the real server on Azurite produce their spans with their attributes and the counters with the
right values; a coalesced run has its span; a failed batch counts as failed; a log line carries the trace and
span ids of the span it was written in; no secret reaches a span, a metric or a log record; and telemetry that
raises at every hook costs nothing but itself."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from azure.storage.blob import BlobServiceClient, ContainerClient
from opentelemetry.trace import SpanKind, StatusCode

from scripts import sample_data
from shared.services import Services
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.shared.telemetry.conftest import Captured
from tests.support import secret_watch
from tests.support.azurite import Azurite


def attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_an_intake_and_its_export_make_their_spans_and_count_their_records(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest)
    records = list(sample_data.events(40, seed=7, hours=2))  # two hour partitions: two files
    batch = post_batch(api, dest, records)
    replay_key = {"Idempotency-Key": "k-1"}
    post_batch(api, dest, records[:5], **replay_key)
    assert post_batch(api, dest, records[:5], **replay_key)["batch_id"]  # a replay: accepted once, counted once
    accepted = captured.read_metrics()
    # Saving cached the SAS; forgotten (as after a 401), the export reads it from the store once.
    services.secrets.invalidate(services.destinations.get_record(dest).secret_name or "")

    summary = api.post("/api/exports/run").json()
    assert summary["landed"] == 2
    assert len(jsonl_records(fresh_container)) == 45
    exported = captured.read_metrics()

    intakes = captured.spans("intake batch")
    assert len(intakes) == 3
    first = attributes(intakes[0])
    assert intakes[0].kind is SpanKind.SERVER
    assert first["destination_id"] == dest and first["record_type"] == "events"
    assert first["batch_id"] == batch["batch_id"] and first["records"] == 40 and first["bytes"] > 0
    assert first["outcome"] == "accepted"
    assert [attributes(s)["outcome"] for s in intakes[1:]] == ["accepted", "replayed"]
    assert captured.sums(accepted, "export.records.accepted") == {(dest, "events"): 45}

    export = next(s for s in captured.spans("export batch") if attributes(s)["batch_id"] == batch["batch_id"])
    found = attributes(export)
    assert found["destination_id"] == dest and found["record_type"] == "events" and found["records"] == 40
    assert found["attempt"] == 1 and found["outcome"] == "landed" and found["files"] == 2
    assert found["bytes"] == api.get(f"/api/batches/{batch['batch_id']}").json()["output_bytes"]
    assert export.status.status_code is not StatusCode.ERROR
    assert export.context.trace_id != intakes[0].context.trace_id  # an export is its own trace

    assert captured.sums(exported, "export.records.landed") == {(dest, "events"): 45}
    assert captured.sums(exported, "export.records.failed") == {}
    assert captured.sums(exported, "export.bytes.written")[(dest, "events")] == sum(
        attributes(s)["bytes"] for s in captured.spans("export batch"))
    lags = [p for name, a, p in exported if name == "export.lag" and a["destination_id"] == dest]
    assert sum(p.count for p in lags) == 2 and all(p.min >= 0 for p in lags)
    durations = [(a, p) for name, a, p in exported if name == "export.duration" and a["destination_id"] == dest]
    assert {(a["unit"], a["outcome"]) for a, _ in durations} == {("batch", "landed")}
    assert sum(p.count for _, p in durations) == 2
    assert captured.sums(exported, "secrets.store.reads") == {(): 1}  # two batches, one read: then the cache
    pending = {a["destination_id"]: p.value for name, a, p in exported if name == "export.batches.pending"}
    assert pending[dest] == 2  # what the pass saw when it listed the due batches: no request of its own
    assert api.post("/api/exports/run").json()["landed"] == 0
    pending = {a["destination_id"]: p.value for name, a, p in captured.read_metrics()
               if name == "export.batches.pending"}
    assert pending[dest] == 0  # the next listing: none left


def test_a_log_line_carries_the_ids_of_the_span_it_was_written_in(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest)
    batch = post_batch(api, dest, list(sample_data.events(5, seed=1)))
    assert api.post("/api/exports/run").json()["landed"] == 1

    (intake,) = captured.spans("intake batch")
    (export,) = captured.spans("export batch")
    logs = {record.log_record.body: record.log_record for record in captured.logs()}
    landed = next(r for body, r in logs.items() if str(body).startswith("batch landed ") and dest in str(body))
    assert (landed.trace_id, landed.span_id) == (export.context.trace_id, export.context.span_id)
    assert landed.attributes["ctx_batch_id"] == batch["batch_id"]  # log_event's fields, as attributes
    staged = [r for body, r in logs.items() if str(body).startswith("batch staged ") and batch["batch_id"] in str(body)]
    assert staged and all(r.trace_id == intake.context.trace_id for r in staged)  # written in a worker thread


def test_a_coalesced_run_has_its_span_and_its_batches_land_in_the_counters(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest, coalesce={"max_delay_seconds": 0,
                                                                             "target_file_mb": 128})
    for n in range(3):
        post_batch(api, dest, list(sample_data.events(4, seed=n)))
    captured.read_metrics()
    assert api.post("/api/exports/run").json()["landed"] == 3
    exported = captured.read_metrics()

    (run,) = captured.spans("export run")
    found = attributes(run)
    assert found["destination_id"] == dest and found["record_type"] == "events" and found["run_id"].startswith("r")
    assert found["batches"] == 3 and found["records"] == 12 and found["attempt"] == 1
    assert found["outcome"] == "landed" and found["files"] >= 1 and found["bytes"] > 0
    assert captured.sums(exported, "export.records.landed") == {(dest, "events"): 12}
    assert sum(p.count for name, a, p in exported if name == "export.lag" and a["destination_id"] == dest) == 3
    assert {(a["unit"], a["outcome"]) for name, a, _ in exported
            if name == "export.duration" and a["destination_id"] == dest} == {("run", "landed")}


def test_a_batch_that_fails_for_good_counts_as_failed_and_its_span_says_why(
    api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient, captured: Captured
) -> None:
    container = blob_service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, container, dest_id=dest)
    batch = post_batch(api, dest, list(sample_data.events(6, seed=2)), record_type="events")
    container.delete_container()  # the container is gone: not retryable
    captured.read_metrics()
    assert api.post("/api/exports/run").json()["failed"] == 1
    exported = captured.read_metrics()

    (span,) = captured.spans("export batch")
    assert attributes(span)["batch_id"] == batch["batch_id"] and attributes(span)["outcome"] == "failed"
    assert attributes(span)["error_code"] == "container_not_found"
    assert span.status.status_code is StatusCode.ERROR
    assert captured.sums(exported, "export.records.failed") == {(dest, "events"): 6}
    assert captured.sums(exported, "export.records.landed") == {}


def test_a_refused_intake_is_a_span_with_its_status_and_counts_nothing(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest)
    refused = api.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=b'{"event": 1}\n',
                       headers={"content-type": "application/x-ndjson"})
    assert refused.status_code == 400  # a record with no event name
    (span,) = captured.spans("intake batch")
    found = attributes(span)
    assert found["outcome"] == "refused" and found["http.response.status_code"] == 400
    assert found["error_code"] == refused.json()["error"]["code"] and found["error.type"] == "BadRequest"
    assert span.status.status_code is not StatusCode.ERROR  # the client's mistake, not the server's
    assert "batch_id" not in found
    assert captured.sums(captured.read_metrics(), "export.records.accepted") == {}


def test_no_secret_reaches_a_span_a_metric_or_a_log_record(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    """The SAS of the destination (registered with the watch when made), through intake, export, a failing
    probe and a hostile log field: no span, metric point or exported log record holds it, or its signature."""
    import logging

    from shared.logging_setup import log_event

    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest)
    post_batch(api, dest, list(sample_data.events(8, seed=3)))
    assert api.post("/api/exports/run").json()["landed"] == 1
    assert api.post(f"/api/destinations/{dest}/test").status_code == 200
    from tests.support.sas import container_sas

    leaked = secret_watch.register(f"https://x.blob.core.windows.net/c?{container_sas('c')}", "a SAS URL") or ""
    log_event(logging.getLogger("shared.export.runner"), "hostile field", url=leaked)  # a field with a SAS
    captured.read_metrics()

    texts = [span.to_json() for span in captured.spans()] + [r.to_json() for r in captured.logs()]
    texts += [f"{a!r} {p!r}" for _, a, p in captured.metric_points]
    assert len(captured.spans()) == 2 and captured.metric_points and captured.logs()
    hostile = [r for r in captured.logs() if r.log_record.body and "hostile field" in str(r.log_record.body)]
    assert hostile and "sig=REDACTED" in hostile[0].log_record.attributes["ctx_url"]
    secrets = dict(secret_watch._secrets)  # every secret of the run so far, the SAS URL's pieces included
    assert secret_watch.pieces(leaked).keys() <= secrets.keys()
    for text in texts:
        for value in secrets:
            assert value not in text, f"a secret ({secrets[value]}) in telemetry"


def test_telemetry_that_raises_at_every_hook_costs_neither_the_intake_nor_the_export(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, captured: Captured
) -> None:
    """Span processors, the log processor and every metric measurement raise (as a broken exporter plug-in
    would): the batch is accepted and lands all the same, and only the telemetry is lost."""
    dest = f"otel-{uuid.uuid4().hex[:8]}"
    make_destination(api, azurite, fresh_container, dest_id=dest)
    captured.switches.faulty.set()
    try:
        batch = post_batch(api, dest, list(sample_data.events(9, seed=4)))
        assert api.post("/api/exports/run").json()["landed"] == 1
    finally:
        captured.switches.faulty.clear()
    assert api.get(f"/api/batches/{batch['batch_id']}").json()["state"] == "landed"
    assert len(jsonl_records(fresh_container)) == 9
    assert captured.spans() == []
    assert captured.sums(captured.read_metrics(), "export.records.landed") == {}
