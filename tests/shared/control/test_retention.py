"""Control storage does not keep customers' records and batch states forever (issue 11, item 7).

The timer runs `retention.sweep` after each export pass; here it is run with the moment it would be later.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.control import batch_index, batches, retention, runs
from shared.control.batch_state import BatchState
from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.control.test_batch_listing_cost import FIXTURES
from tests.shared.export.test_coalesced_runs import COALESCE, post_small_batches
from tests.shared.export_helpers import failed_batch, make_destination, post_batch
from tests.support.azurite import Azurite


def staged_blobs(services: Services, batch_id: str) -> list[str]:
    return [item.name for item in services.control.list(f"staged/{batch_id}/")]


def listed(api: httpx.Client, **query: str) -> list[str]:
    answer = api.get("/api/batches", params=query)
    assert answer.status_code == 200, answer.text
    return [b["batch_id"] for b in answer.json()["batches"]]


def landed_batch(api: httpx.Client, services: Services, azurite: Azurite, container: ContainerClient) -> str:
    dest = make_destination(api, azurite, container)
    batch_id = str(post_batch(api, dest, list(sample_data.events(20, hours=2)))["batch_id"])
    assert run_export_pass(services).landed == 1
    return batch_id


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def test_a_landed_batch_loses_its_staged_records_after_a_week_and_its_state_after_30_days(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    batch_id = landed_batch(api, services, azurite, fresh_container)
    assert staged_blobs(services, batch_id)  # kept, so that a replay can use them

    assert retention.sweep(services.control, services.settings, moment=later(hours=167)).staged_deleted == 0
    assert staged_blobs(services, batch_id)

    assert retention.sweep(services.control, services.settings, moment=later(hours=169)).staged_deleted == 1
    assert staged_blobs(services, batch_id) == []
    state = batches.get_state(services.control, batch_id)
    assert state.state == "landed" and state.staged_deleted_at is not None
    assert api.get(f"/api/batches/{batch_id}").status_code == 200

    assert retention.sweep(services.control, services.settings, moment=later(days=29)).states_deleted == 0
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).states_deleted == 1
    assert api.get(f"/api/batches/{batch_id}").status_code == 404
    assert listed(api, destination_id="acme") == [] and listed(api, state="landed") == []
    assert [b.name for b in services.control.list("") if batch_id in b.name] == []  # nothing of it is left


def test_with_zero_hours_the_staged_records_go_at_landing(
        api: httpx.Client, settings: Settings, azurite: Azurite, fresh_container: ContainerClient,
        _api_server: tuple[str, object]) -> None:
    services = build_services(settings.model_copy(update={"staged_retention_hours": 0}))
    _api_server[1].value = services  # type: ignore[attr-defined]  # the API serves these services
    batch_id = landed_batch(api, services, azurite, fresh_container)
    assert staged_blobs(services, batch_id) == []
    assert batches.get_state(services.control, batch_id).staged_deleted_at is not None


def test_a_failed_batch_keeps_its_records_for_a_retry_then_they_go_and_its_state_says_so(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    batch_id = failed_batch(api, services, azurite, blob_service, records=5)

    assert retention.sweep(services.control, services.settings, moment=later(days=29)).failed_expired == 0
    assert staged_blobs(services, batch_id)  # a retry can still export it
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).failed_expired == 1
    assert staged_blobs(services, batch_id) == []
    status = api.get(f"/api/batches/{batch_id}").json()
    assert status["state"] == "failed" and status["last_error"]["code"] == "container_not_found"
    assert "staged records were deleted after 30 days failed (FAILED_RETENTION_DAYS)" in status["notes"][-1]
    retry = api.post(f"/api/batches/{batch_id}/retry")
    assert retry.status_code == 409 and "send its records again" in retry.json()["error"]["message"]

    assert retention.sweep(services.control, services.settings, moment=later(days=62)).states_deleted == 1
    assert api.get(f"/api/batches/{batch_id}").status_code == 404


def test_a_failed_batch_retried_in_time_keeps_its_records(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    batch_id = failed_batch(api, services, azurite, blob_service, records=5)
    assert api.post(f"/api/batches/{batch_id}/retry").status_code == 200
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).failed_expired == 0
    assert staged_blobs(services, batch_id)
    assert batches.get_state(services.control, batch_id).state == "pending"


def test_each_run_does_bounded_work(api: httpx.Client, services: Services, azurite: Azurite,
                                    fresh_container: ContainerClient) -> None:
    dest = make_destination(api, azurite, fresh_container)
    ids = [post_batch(api, dest, list(sample_data.events(3)))["batch_id"] for _ in range(3)]
    assert run_export_pass(services).landed == 3
    moment = later(hours=169)
    done = [retention.sweep(services.control, services.settings, moment=moment, limit=2).staged_deleted
            for _ in range(3)]
    assert done == [2, 1, 0]
    assert all(staged_blobs(services, batch_id) == [] for batch_id in ids)


def test_states_written_before_the_index_are_indexed_then_listed_and_retained(
        api: httpx.Client, services: Services) -> None:
    old = BatchState.from_json(orjson.loads((FIXTURES / "landed_events.json").read_bytes()))
    # As the code before the index wrote it: the state blob with its listing metadata, nothing else.
    services.control.put(batches.state_blob(old.batch_id), old.to_json(), metadata=old.metadata())
    assert batch_index.backfill(services.control, batches.STATES_PREFIX, max_states=500) == (1, True)
    summary = retention.sweep(services.control, services.settings)
    assert (summary.indexed, summary.index_complete) == (0, True)
    assert listed(api, state="landed") == [old.batch_id] == listed(api, destination_id=old.destination_id)


def test_a_listing_indexes_the_states_written_before_the_index_itself(api: httpx.Client, services: Services) -> None:
    """A fresh deployment's first listing, or one over states the former index kept: newest first at once."""
    old = BatchState.from_json(orjson.loads((FIXTURES / "landed_events.json").read_bytes()))
    services.control.put(batches.state_blob(old.batch_id), old.to_json(), metadata=old.metadata())
    assert listed(api, state="landed") == [old.batch_id] == listed(api, destination_id=old.destination_id)
    assert batch_index.is_complete(services.control, batches.STATES_PREFIX)
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).states_deleted == 1
    assert listed(api, state="landed") == []


def run_documents(services: Services) -> list[str]:
    return [item.name for item in services.control.list("runs/") if not item.name.startswith("runs/leases/")]


def test_a_coalesced_runs_document_goes_once_none_of_its_members_can_need_it(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """Landed: kept while its members' states are (30 days), then deleted with them; not kept forever."""
    make_destination(api, azurite, fresh_container, coalesce=COALESCE)
    posted = post_small_batches(api, "acme", 3)
    assert run_export_pass(services).landed == 3
    run_id = batches.get_state(services.control, next(iter(posted))).run_id
    assert run_documents(services) == [runs.run_blob(run_id or "")]

    assert retention.sweep(services.control, services.settings, moment=later(days=29)).runs_deleted == 0
    assert run_documents(services) == [runs.run_blob(run_id or "")]
    swept = retention.sweep(services.control, services.settings, moment=later(days=31))
    assert (swept.runs_deleted, swept.states_deleted) == (1, 3)
    assert run_documents(services) == [] and list(services.control.list(batch_index.retention_prefix("runs"))) == []


def test_a_failed_run_redone_after_a_retry_keeps_its_document_until_its_later_landing_is_old(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    """Failed now, retried and landed 10 days later: the failure's turn comes at 30 days and finds the run redone
    since; the landing's, at 40, deletes it. A member retried in time must find its run (same names)."""
    container = blob_service.create_container(f"dest-gone-{uuid.uuid4().hex[:12]}")
    make_destination(api, azurite, container, coalesce=COALESCE)
    posted = post_small_batches(api, "acme", 2)
    container.delete_container()
    assert run_export_pass(services).failed == 2
    run_id = batches.get_state(services.control, next(iter(posted))).run_id or ""

    blob_service.create_container(container.container_name)
    for batch_id in posted:
        assert api.post(f"/api/batches/{batch_id}/retry").status_code == 200
    assert run_export_pass(services, clock=lambda: later(days=10)).landed == 2
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).runs_deleted == 0
    assert run_documents(services) == [runs.run_blob(run_id)]
    assert retention.sweep(services.control, services.settings, moment=later(days=41)).runs_deleted == 1
    assert run_documents(services) == []
    blob_service.delete_container(container.container_name)


def test_a_state_goes_with_its_records_and_markers_in_one_batch_request(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its staged records and every marker it may have had go in one Blob Batch request, then the state and its
    retention marker: 3 deleting requests, where one delete each made 11."""
    batch_id = landed_batch(api, services, azurite, fresh_container)
    assert retention.sweep(services.control, services.settings, moment=later(hours=169)).staged_deleted == 1
    sent: list[str] = []
    real_send = RequestsTransport.send

    def counted(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:  # every storage request, still sent
        batched = parse_qs(urlsplit(request.url).query).get("comp") == ["batch"]
        sent.append("batch" if batched else request.method)
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", counted)
    assert retention.sweep(services.control, services.settings, moment=later(days=31)).states_deleted == 1
    monkeypatch.undo()
    assert (sent.count("batch"), sent.count("DELETE")) == (1, 2), sent
    assert [b.name for b in services.control.list("") if batch_id in b.name] == []
