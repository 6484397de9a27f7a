"""Batches end to end against Azurite: intake -> staging -> export pass -> landed exactly once."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.export.runner import Hooks, run_export_pass
from shared.formats.csv_cells import flatten_record
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.export_helpers import (
    blob_names,
    csv_rows,
    data_files,
    jsonl_records,
    make_destination,
    manifests,
    post_batch,
    read_blob,
)
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination


class Crash(BaseException):
    """Stands in for the worker dying: nothing after it runs, no outcome is recorded."""


def three_hour_events(count: int = 60) -> list[dict[str, Any]]:
    return list(sample_data.events(count, hours=3))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_events_land_in_hour_partitions(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
                                        fmt: str, compression: str) -> None:
    dest = make_destination(api, azurite, fresh_container, prefix="exports", format=fmt, compression=compression)
    records = three_hour_events()
    batch = post_batch(api, dest, records)
    summary = api.post("/api/exports/run").json()
    assert summary["landed"] == 1 and summary["failed"] == 0

    ext = {"jsonl": "jsonl", "csv": "csv"}[fmt] + (".gz" if compression == "gzip" else "")
    bid = batch["batch_id"]
    assert data_files(fresh_container) == [
        f"exports/events/date=2026-11-20/hour={h}/{bid}-0000.{ext}" for h in ("09", "10", "11")
    ]
    manifest = manifests(fresh_container)[0]
    assert f"exports/events/_manifests/{bid}.json" in blob_names(fresh_container)
    assert manifest["records"] == len(records) == sum(f["records"] for f in manifest["files"])
    for entry in manifest["files"]:
        raw = fresh_container.download_blob(entry["name"]).readall()
        assert entry["bytes"] == len(raw)
        assert entry["md5"] == hashlib.md5(raw).hexdigest()
    if fmt == "jsonl":
        assert sorted(jsonl_records(fresh_container), key=orjson.dumps) == sorted(records, key=orjson.dumps)
    else:
        rows = [row for name in data_files(fresh_container) for row in csv_rows(fresh_container, name)]
        # Each file's header is its partition's column union: compare the non-empty cells.
        landed = [{k: v for k, v in row.items() if v != ""} for row in rows]
        expected = [{k: v for k, v in flatten_record(r).items() if v != ""} for r in records]
        key = lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS)  # noqa: E731
        assert sorted(landed, key=key) == sorted(expected, key=key)

    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "landed"
    assert status["records"] == len(records)
    assert status["attempts"] == 1
    assert [b["name"] for b in status["blobs"]] == data_files(fresh_container)
    assert status["manifest"] == f"exports/events/_manifests/{bid}.json"


def test_jsonl_round_trips_each_record_exactly(api: httpx.Client, azurite: Azurite,
                                               fresh_container: ContainerClient, services: Services) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    lines = [
        b'{"event":"big","ts":1763629200,"n":123456789012345678901234567890,"f":1.5e300}',
        b'{"event":"uni","ts":1763629201,"s":"\\u00fc\xc3\xbc \xf0\x9f\x8e\x89","empty":{},"list":[]}',
        b'{"event":"deep","ts":1763629202,"d":' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}",
    ]
    response = api.post(f"/api/destinations/{dest}/batches?type=events", content=b"\n".join(lines),
                        headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    run_export_pass(services)
    landed = read_blob(fresh_container, data_files(fresh_container)[0]).splitlines()
    assert landed == lines  # byte for byte: big numbers, unicode and nesting untouched


def test_profiles_land_by_export_date(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
                                      services: Services) -> None:
    dest = make_destination(api, azurite, fresh_container, format="csv")
    profiles = list(sample_data.profiles(40))
    batch = post_batch(api, dest, profiles, record_type="profiles")
    moment = datetime.now(UTC) + timedelta(seconds=1)
    assert run_export_pass(services, clock=lambda: moment).landed == 1
    bid = batch["batch_id"]
    assert data_files(fresh_container) == [f"profiles/date={moment:%Y-%m-%d}/{bid}-0000.csv.gz"]
    assert manifests(fresh_container)[0]["records"] == 40
    rows = csv_rows(fresh_container, data_files(fresh_container)[0])
    assert len(rows) == 40
    assert rows[0]["identity"] == "user-0"
    assert rows[0]["profileData.Name"] == "Ünïcode Nämé 0"


def with_settings(services: Services, **changes: Any) -> Services:
    settings: Settings = services.settings.model_copy(update=changes)
    fresh = build_services(settings, secrets=services.secrets)
    return fresh


def force_pending(services: Services, batch_id: str) -> None:
    """As if the worker died after writing the files but before recording the landing. No transition leads
    from landed back to running, so the test writes that document itself."""
    from shared.control import batches
    from shared.control.batch_state import BatchState, iso

    document = batches.get_state(services.control, batch_id).to_json()
    state = BatchState.from_json(document | {"state": "running", "updated_at": iso(datetime.now(UTC))})
    batches.save_state(services.control, state)  # running: its open marker says so, due


def test_rerun_of_a_batch_leaves_one_copy_and_no_stale_part(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    records = list(sample_data.events(300, hours=1))
    bid = post_batch(api, dest, records)["batch_id"]
    small_parts = with_settings(services, part_max_bytes=20_000)
    assert run_export_pass(small_parts).landed == 1
    first = data_files(fresh_container)
    assert len(first) > 2

    force_pending(services, bid)
    assert run_export_pass(small_parts).landed == 1
    assert data_files(fresh_container) == first  # same names, overwritten
    assert len(jsonl_records(fresh_container)) == len(records)

    # A re-run that writes fewer parts removes the ones it no longer writes.
    force_pending(services, bid)
    assert run_export_pass(services).landed == 1
    assert data_files(fresh_container) == [f"events/date=2026-11-20/hour=09/{bid}-0000.jsonl"]
    assert sorted(jsonl_records(fresh_container), key=orjson.dumps) == sorted(records, key=orjson.dumps)
    assert manifests(fresh_container)[0]["files"][0]["records"] == len(records)


def test_crash_between_parts_is_finished_by_next_pass(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="gzip")
    records = list(sample_data.events(300, hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    small_parts = with_settings(services, part_max_bytes=20_000)
    commits: list[str] = []

    def die_on_third(name: str) -> None:
        commits.append(name)
        if len(commits) == 3:
            raise Crash()

    with pytest.raises(Crash):
        run_export_pass(small_parts, hooks=Hooks(before_commit=die_on_third))
    assert api.get(f"/api/batches/{bid}").json()["state"] == "running"
    assert manifests(fresh_container) == []  # no manifest before all files

    summary = run_export_pass(small_parts)
    assert summary.landed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "landed" and status["total_attempts"] == 2
    landed = jsonl_records(fresh_container)
    assert len(landed) == len(records)
    assert sorted(landed, key=orjson.dumps) == sorted(records, key=orjson.dumps)
    assert sorted(f["name"] for f in manifests(fresh_container)[0]["files"]) == data_files(fresh_container)


def test_two_passes_at_once_land_each_batch_once(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    accepted = 0
    for i in range(50):
        batch = list(sample_data.events(10, seed=i, hours=1))
        post_batch(api, dest, batch)
        accepted += len(batch)
    results: list[Any] = []

    def run() -> None:
        results.append(run_export_pass(build_services(services.settings, secrets=services.secrets)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.landed for r in results) == 50
    assert sum(r.failed for r in results) == 0
    assert len(jsonl_records(fresh_container)) == accepted
    assert len(manifests(fresh_container)) == 50
    states = api.get("/api/batches", params={"destination_id": dest, "limit": 1000}).json()["batches"]
    assert len(states) == 50 and {b["state"] for b in states} == {"landed"}


def test_expired_sas_fails_then_lands_after_update(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=2)
    dest = make_destination(api, azurite, fresh_container, expiry=soon)
    records = three_hour_events(30)
    bid = post_batch(api, dest, records)["batch_id"]
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.5)

    summary = api.post("/api/exports/run").json()
    assert summary["failed"] == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed"
    assert "expired" in status["last_error"]["message"]
    assert api.get("/api/batches", params={"state": "failed"}).json()["batches"][0]["batch_id"] == bid

    make_destination(api, azurite, fresh_container, dest_id=dest)  # a fresh SAS
    assert api.get(f"/api/batches/{bid}").json()["state"] == "pending"
    assert api.post("/api/exports/run").json()["landed"] == 1
    assert len(jsonl_records(fresh_container)) == len(records)


def test_retry_endpoint(api: httpx.Client, azurite: Azurite, blob_service: BlobServiceClient,
                        services: Services) -> None:
    container = blob_service.get_container_client("later-created")
    token = container_sas("later-created")
    api.put("/api/destinations/later", params={"verify": "false"},
            json=sas_destination(azurite.account_url, "later-created", token))
    bid = post_batch(api, "later", three_hour_events(5))["batch_id"]
    assert run_export_pass(services).failed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["last_error"]["code"] == "container_not_found"
    assert "does not exist" in status["last_error"]["message"]
    container.create_container()
    try:
        assert api.post(f"/api/batches/{bid}/retry").json()["state"] == "pending"
        assert run_export_pass(services).landed == 1
        assert api.post(f"/api/batches/{bid}/retry").status_code == 409
    finally:
        container.delete_container()


def test_idempotency_key_returns_first_batch(api: httpx.Client, azurite: Azurite,
                                             fresh_container: ContainerClient) -> None:
    dest = make_destination(api, azurite, fresh_container)
    records = three_hour_events(10)
    first = post_batch(api, dest, records, **{"Idempotency-Key": "order-42"})
    again = post_batch(api, dest, records, **{"Idempotency-Key": "order-42"})
    assert first["batch_id"] == again["batch_id"]
    other = api.post(f"/api/destinations/{dest}/batches?type=events", content=b'{"event":"x","ts":1763629200}',
                     headers={"content-type": "application/x-ndjson", "Idempotency-Key": "order-42"})
    assert other.status_code == 409
    assert len(api.get("/api/batches").json()["batches"]) == 1
    assert api.post("/api/exports/run").json()["landed"] == 1
    assert len(jsonl_records(fresh_container)) == 10


def test_json_array_and_gzip_bodies(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    import gzip

    dest = make_destination(api, azurite, fresh_container)
    records = three_hour_events(12)
    r1 = api.post(f"/api/destinations/{dest}/batches?type=events", content=orjson.dumps(records),
                  headers={"content-type": "application/json"})
    r2 = api.post(f"/api/destinations/{dest}/batches?type=events",
                  content=gzip.compress(sample_data.ndjson(records)),
                  headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"})
    assert r1.status_code == 202 and r2.status_code == 202
    assert r1.json()["records"] == r2.json()["records"] == 12
    assert api.post("/api/exports/run").json()["landed"] == 2
    assert len(jsonl_records(fresh_container)) == 24


def staged_blobs(blob_service: BlobServiceClient, services: Services) -> list[str]:
    control = blob_service.get_container_client(services.settings.control_container)
    if not control.exists():
        return []
    return [b.name for b in control.list_blobs() if not b.name.startswith("destinations/")]


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b'{"event":"a","ts":1763629200}\n{"event":', {}, 400, "line 2"),
        (b'{"event":"a","ts":1763629200}\n[1,2]', {}, 400, "line 2"),
        (b'{"ts":1763629200}', {}, 400, "name"),
        (b'{"event":"a"}', {}, 400, "time"),
        (b'{"event":"a","ts":"yesterday"}', {}, 400, "yesterday"),
        (b"", {}, 400, "no records"),
        (b'{"event":"a","ts":1763629200}', {"content-type": "text/plain"}, 415, "Content-Type"),
        (b'{"event":"a","ts":1763629200}', {"content-encoding": "br"}, 415, "Content-Encoding"),
        (b"not gzip at all", {"content-encoding": "gzip"}, 400, "gzip"),
    ],
)
def test_bad_input_is_refused_and_nothing_staged(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    blob_service: BlobServiceClient, body: bytes, headers: dict[str, str], status: int, needle: str,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    response = api.post(f"/api/destinations/{dest}/batches?type=events", content=body,
                        headers={"content-type": "application/x-ndjson", **headers})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] + orjson.dumps(error["details"]).decode()
    assert staged_blobs(blob_service, services) == []


def test_unknown_destination_and_bad_type(api: httpx.Client, services: Services,
                                          blob_service: BlobServiceClient) -> None:
    body = b'{"event":"a","ts":1763629200}'
    r = api.post("/api/destinations/nobody/batches?type=events", content=body,
                 headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 404 and "nobody" in r.json()["error"]["message"]
    assert staged_blobs(blob_service, services) == []


def test_bad_type_and_oversize(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
                               services: Services, blob_service: BlobServiceClient) -> None:
    import gzip

    dest = make_destination(api, azurite, fresh_container)
    r = api.post(f"/api/destinations/{dest}/batches?type=clicks", content=b'{"event":"a","ts":1}',
                 headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "type"
    limit = services.settings.max_request_bytes
    big = b'{"event":"a","ts":1763629200,"pad":"' + b"x" * limit + b'"}'
    r = api.post(f"/api/destinations/{dest}/batches?type=events", content=big,
                 headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 413
    bomb = gzip.compress(b" " * (limit + 10))
    r = api.post(f"/api/destinations/{dest}/batches?type=events", content=bomb,
                 headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"})
    assert r.status_code == 413 and "inflates" in r.json()["error"]["message"]
    assert staged_blobs(blob_service, services) == []
