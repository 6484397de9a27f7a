"""Deleting a destination with batches not yet landed (issue 11, item 11).

DELETE answers 409 saying how many batches have not landed, unless `?force=true`, which fails them with the
reason "destination deleted" and deletes their staged records; a destination created again under the same id
never exports an earlier one's batches.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.control import batches
from shared.control.batch_state import BatchState
from shared.destinations.record import DestinationRecord
from shared.destinations.service import destination_blob
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.control.test_batch_listing_cost import FIXTURES
from tests.shared.export_helpers import data_files, failed_batch, make_destination, post_batch
from tests.support.azurite import Azurite


def staged_blobs(services: Services, batch_id: str) -> list[str]:
    return [item.name for item in services.control.list(f"staged/{batch_id}/")]


def test_deleting_a_destination_with_batches_not_landed_is_refused_naming_how_many(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    failed = failed_batch(api, services, azurite, blob_service)
    pending = [post_batch(api, "acme", list(sample_data.events(3)))["batch_id"] for _ in range(2)]

    answer = api.delete("/api/destinations/acme")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "batches_not_landed"
    assert "has 3 batch(es) not yet landed" in error["message"] and "?force=true" in error["message"]
    assert api.get("/api/destinations/acme").status_code == 200  # nothing was deleted
    assert [batches.get_state(services.control, b).state for b in [failed, *pending]] == ["failed", "pending",
                                                                                           "pending"]


def test_force_fails_them_with_the_reason_and_deletes_their_records(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    failed = failed_batch(api, services, azurite, blob_service)
    pending = str(post_batch(api, "acme", list(sample_data.events(3)))["batch_id"])

    assert api.delete("/api/destinations/acme", params={"force": "true"}).status_code == 204
    assert api.get("/api/destinations/acme").status_code == 404
    for batch_id in (failed, pending):
        status = api.get(f"/api/batches/{batch_id}").json()
        assert status["state"] == "failed"
        assert status["last_error"]["code"] == "destination_deleted"
        assert status["last_error"]["message"] == "destination deleted"
        assert staged_blobs(services, batch_id) == []
    assert run_export_pass(services).landed == 0  # nothing left due
    failed_listed = api.get("/api/batches", params={"destination_id": "acme", "state": "failed"}).json()
    assert sorted(b["batch_id"] for b in failed_listed["batches"]) == sorted([failed, pending])


def test_a_destination_created_again_never_exports_the_earlier_ones_batches(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        blob_service: BlobServiceClient) -> None:
    old = blob_service.create_container(f"old-{uuid.uuid4().hex[:12]}")
    make_destination(api, azurite, old)
    # Accepted while the destination was being deleted (intake had read it just before): no DELETE saw it.
    batch_id = str(post_batch(api, "acme", list(sample_data.events(3)))["batch_id"])
    services.control.delete(destination_blob("acme"))
    make_destination(api, azurite, fresh_container)  # a new destination, same id, another customer container

    summary = run_export_pass(services)
    assert (summary.landed, summary.failed) == (0, 1)
    assert data_files(fresh_container) == []
    error = api.get(f"/api/batches/{batch_id}").json()["last_error"]
    assert error["code"] == "destination_deleted" and error["message"].startswith("destination deleted")
    assert api.post(f"/api/batches/{batch_id}/retry").status_code == 200
    assert run_export_pass(services).landed == 0 and data_files(fresh_container) == []
    old.delete_container()


def test_a_new_destination_has_a_generation_that_a_replacing_save_keeps(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    first = services.destinations.get_record("acme").generation
    make_destination(api, azurite, fresh_container, prefix="again/")
    assert first and services.destinations.get_record("acme").generation == first
    assert "generation" not in api.get("/api/destinations/acme").json()  # internal, not part of the API


def test_older_records_and_batches_without_a_generation_still_belong_together() -> None:
    record = DestinationRecord.from_json(orjson.loads(
        (FIXTURES.parent.parent / "destinations" / "fixtures" / "sas-inline.json").read_bytes()))
    batch = BatchState.from_json(orjson.loads((FIXTURES / "pending_staged_events.json").read_bytes()))
    assert record.generation is None and batch.destination_generation is None
    assert record.owns(batch)
    created_later = record.model_copy(update={"generation": "g2",
                                              "created_at": (batch.created_at + timedelta(seconds=1)).isoformat()})
    assert not created_later.owns(batch)  # a destination created after the batch was accepted
    assert created_later.owns(batch.changed(created_at=datetime(2030, 1, 1, tzinfo=UTC)))
    assert not created_later.owns(batch.changed(destination_generation="g1"))
    assert created_later.owns(batch.changed(destination_generation="g2"))


def test_a_batch_read_under_the_old_destination_is_never_the_new_ones_even_when_staged_after_it(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        blob_service: BlobServiceClient) -> None:
    """Intake reads the destination, then the body; if the destination is deleted and created again meanwhile,
    the batch commits after the new one exists. It carries the generation intake read, so time cannot decide."""
    from shared.intake.accept import IntakeRequest, accept_batch

    old = blob_service.create_container(f"old-{uuid.uuid4().hex[:12]}")
    make_destination(api, azurite, old)
    read_at_intake = services.destinations.get_record("acme").generation
    posted = str(post_batch(api, "acme", list(sample_data.events(2)))["batch_id"])
    assert services.control.get(f"states/{posted}.json") is not None
    assert BatchState.from_json(batches.get_state(services.control, posted).to_json()).destination_generation \
        == read_at_intake  # intake records the generation it read
    assert api.delete("/api/destinations/acme", params={"force": "true"}).status_code == 204
    make_destination(api, azurite, fresh_container)

    body = b"".join(orjson.dumps(r) + b"\n" for r in sample_data.events(3))
    late, _ = accept_batch(services.control, IntakeRequest("acme", "events", "application/x-ndjson", None, None,
                                                           destination_generation=read_at_intake),
                           body, max_bytes=1 << 20)  # committed after the new destination was created
    summary = run_export_pass(services)
    assert (summary.landed, summary.failed) == (0, 1)
    assert api.get(f"/api/batches/{late.batch_id}").json()["last_error"]["code"] == "destination_deleted"
    assert data_files(fresh_container) == []
    old.delete_container()
