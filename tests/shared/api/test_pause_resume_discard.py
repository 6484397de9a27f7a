"""Pausing and resuming a destination, and discarding a failed batch, through the real server (issue 17): a paused
destination's batches are accepted and staged but not exported (the queue consumer drops their messages, the
sweeper leaves them, a pass skips them), and every one lands after a resume or new credentials."""

from __future__ import annotations

import uuid

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.export.runner import run_export_pass
from shared.export.sweeper import sweep_due
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.export_helpers import drain_queue as drain
from tests.shared.export_helpers import failed_batch, jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination


def events(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"event": "Signed up", "ts": 1763629200 + start + i, "$insert_id": f"p{start + i}"} for i in range(count)]



def state_of(api: httpx.Client, batch: dict[str, object]) -> str:
    return str(api.get(str(batch["status_url"])).json()["state"])


def test_a_paused_destination_stages_its_batches_and_exports_none_until_it_is_resumed(
        api: httpx.Client, services: Services, settings: Settings, azurite: Azurite,
        fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    paused = api.post("/api/destinations/acme/pause", json={"reason": "customer moving accounts"})
    assert paused.status_code == 200
    note = paused.json()["paused"]
    assert note["by"] == "operator" and note["reason"] == "customer moving accounts" and note["failed_runs"] is None
    assert api.get("/api/destinations/acme").json()["paused"] == note
    again = api.post("/api/destinations/acme/pause", json={"reason": "another reason"})
    assert again.json()["paused"] == note  # paused already: the first reason stays

    batches = [post_batch(api, "acme", events(3, start=10 * i)) for i in range(4)]
    drain(services)  # each message is handled once and dropped: no spinning on a paused destination
    assert services.export_queue is not None and services.export_queue.approximate_length() == 0
    assert {state_of(api, b) for b in batches} == {"pending"}
    overdue = sweep_due(build_services(settings.model_copy(update={"queue_grace_seconds": 0})))
    assert (overdue.overdue, overdue.sent) == (0, 0)  # the sweeper leaves a paused destination's batches
    summary = run_export_pass(services)
    assert summary.landed == 0 and summary.skipped == 4
    assert jsonl_records(fresh_container) == []

    resumed = api.post("/api/destinations/acme/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is None
    assert services.export_queue.approximate_length() == 4  # the resume sent their messages again
    drain(services, lambda: {state_of(api, b) for b in batches} == {"landed"})
    assert len(jsonl_records(fresh_container)) == 12


def test_new_credentials_resume_a_paused_destination_and_a_save_without_them_keeps_it_paused(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    assert api.post("/api/destinations/acme/pause").json()["paused"]["reason"] == "paused by an operator"
    batch = post_batch(api, "acme", events(2))
    own_secret = api.get("/api/destinations/acme").json()["auth"]["secret_name"]
    same = {"endpoint": azurite.account_url, "container": fresh_container.container_name, "prefix": "kept/",
            "auth": {"type": "sas", "secret_name": own_secret}}
    kept = api.put("/api/destinations/acme", json=same)
    assert kept.status_code == 200 and kept.json()["paused"] is not None  # the same credentials: still paused
    drain(services)
    assert state_of(api, batch) == "pending"

    token = container_sas(fresh_container.container_name, delete=True)
    renewed = api.put("/api/destinations/acme", json=sas_destination(azurite.account_url,
                                                                      fresh_container.container_name, token))
    assert renewed.status_code == 200 and renewed.json()["paused"] is None
    drain(services, lambda: state_of(api, batch) == "landed")
    assert len(jsonl_records(fresh_container)) == 2


def test_resume_retries_the_failed_batches_and_sends_the_waiting_ones(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    """The failures that led to a pause are due again after the resume, as after new credentials."""
    failed_id = failed_batch(api, services, azurite, blob_service)
    destination = api.get("/api/destinations/acme").json()
    blob_service.create_container(destination["container"])
    try:
        api.post("/api/destinations/acme/pause")
        waiting = post_batch(api, "acme", events(2))
        drain(services)
        api.post("/api/destinations/acme/resume")
        drain(services, lambda: {state_of(api, waiting), api.get(f"/api/batches/{failed_id}").json()["state"]}
              == {"landed"})
    finally:
        blob_service.delete_container(destination["container"])


@pytest.mark.parametrize(("body", "field"), [
    (b'{"reason": 7}', "reason"), (b'{"reason": "x", "until": "tomorrow"}', "reason"),
    (b'{"reason": "' + b"x" * 501 + b'"}', "reason"), (b'{"reason": "line\\nbreak"}', "reason"),
    (b'["reason"]', "reason"),
])
def test_a_bad_pause_body_is_a_422_naming_the_reason_and_changes_nothing(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, body: bytes,
        field: str) -> None:
    make_destination(api, azurite, fresh_container)
    answer = api.post("/api/destinations/acme/pause", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == [field]
    assert api.get("/api/destinations/acme").json()["paused"] is None


def test_pause_and_resume_of_a_missing_or_misnamed_destination_are_refused(api: httpx.Client) -> None:
    assert api.post("/api/destinations/nobody/pause").status_code == 404
    assert api.post("/api/destinations/nobody/resume").status_code == 404
    bad = api.post("/api/destinations/Bad_Id/pause")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "id"
    assert api.post("/api/destinations/acme/pause", content=b"{not json").status_code == 400
    huge = api.post("/api/destinations/acme/pause", content=b" " * 5000 + b"{}")
    assert huge.status_code == 413


def test_a_discarded_batch_stays_failed_no_longer_counts_and_only_an_explicit_retry_exports_it(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient) -> None:
    batch_id = failed_batch(api, services, azurite, blob_service)
    assert api.get("/api/destinations/acme/status").json()["counts"]["failed"] == 1
    discarded = api.post(f"/api/batches/{batch_id}/discard")
    assert discarded.status_code == 200
    body = discarded.json()
    assert body["state"] == "failed" and body["discarded_at"] and "discarded by an operator" in body["notes"][-1]
    assert api.post(f"/api/batches/{batch_id}/discard").json() == body  # asked again: the same answer
    status = api.get("/api/destinations/acme/status").json()
    assert status["counts"]["failed"] == 0

    container = blob_service.create_container(f"new-{uuid.uuid4().hex[:12]}")
    try:
        make_destination(api, azurite, container)  # new credentials: a discarded batch is not requeued
        drain(services)
        assert api.get(f"/api/batches/{batch_id}").json()["state"] == "failed"
        retried = api.post(f"/api/batches/{batch_id}/retry").json()
        assert retried["state"] == "pending" and retried["discarded_at"] is None
        drain(services, lambda: api.get(f"/api/batches/{batch_id}").json()["state"] == "landed")
        assert len(jsonl_records(container)) == 4
    finally:
        container.delete_container()


def test_only_a_failed_batch_can_be_discarded(api: httpx.Client, azurite: Azurite,
                                              fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    pending = post_batch(api, "acme", events(1))
    refused = api.post(f"/api/batches/{pending['batch_id']}/discard")
    assert refused.status_code == 409 and "failed" in refused.json()["error"]["message"]
    assert api.post("/api/batches/" + "b" * 32 + "/discard").status_code == 404
    assert api.post("/api/batches/../discard").status_code == 404
