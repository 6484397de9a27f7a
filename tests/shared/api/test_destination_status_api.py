"""GET /api/destinations/{id}/status through the real server, on Azurite, with real exports: what an operator (and
issue 17's console) sees as batches are accepted, land and fail; every answer checked against the OpenAPI
document; hostile ids and thresholds refused with words and nothing written; an earlier generation's batches not
counted; the admin key required, as for every destination route."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from scripts.functions_host import FunctionKeyCheck
from shared.api.app import create_api
from shared.services import Services
from tests.shared.export_helpers import failed_batch, make_destination, post_batch
from tests.support import secret_watch
from tests.support.azurite import Azurite
from tests.support.openapi_contract import Contract
from tests.support.sas import container_sas, sas_destination
from tests.support.server import ApiServer

TEMPLATE = "/api/destinations/{destination_id}/status"
NOTHING = {"pending": 0, "retrying": 0, "running": 0, "failed": 0, "landed_last_24h": 0}


@pytest.fixture
def contract(api: httpx.Client) -> Contract:
    return Contract(api.get("/api/openapi.json").json())


def status(api: httpx.Client, contract: Contract, destination_id: str = "acme", **params: Any) -> dict[str, Any]:
    response = api.get(f"/api/destinations/{destination_id}/status", params=params)
    assert response.status_code == 200, response.text
    return dict(contract.check(response, TEMPLATE))


def control_blobs(services: Services) -> list[str]:
    return sorted(blob.name for blob in services.control.container.list_blobs())


def test_the_status_follows_batches_from_accepted_to_landed(
    api: httpx.Client, contract: Contract, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    make_destination(api, azurite, fresh_container)
    fresh = status(api, contract)
    assert fresh["up_to_date"] is True and fresh["counts"] == NOTHING and fresh["threshold_seconds"] == 900
    assert fresh["last_landed"] is None and fresh["oldest_pending"] is None and fresh["last_error"] is None

    events = post_batch(api, "acme", list(sample_data.events(5)))
    profiles = post_batch(api, "acme", list(sample_data.profiles(2)), "profiles")
    waiting = status(api, contract)
    assert waiting["counts"] == {**NOTHING, "pending": 2}
    assert waiting["oldest_pending"]["batch_id"] == events["batch_id"]
    assert waiting["oldest_pending"]["state"] == "pending" and waiting["up_to_date"] is True

    assert api.post("/api/exports/run").json()["landed"] == 2
    landed = status(api, contract)
    assert landed["up_to_date"] is True and landed["reasons"] == [] and landed["oldest_pending"] is None
    assert landed["counts"] == {**NOTHING, "landed_last_24h": 2} and landed["records_landed_last_24h"] == 7
    assert landed["last_landed"]["batch_id"] in {events["batch_id"], profiles["batch_id"]}
    assert landed["landed_by_hour"][-1]["batches"] == 2 and len(landed["landed_by_hour"]) == 48
    finished = {api.get(f"/api/batches/{b['batch_id']}").json()["finished_at"] for b in (events, profiles)}
    assert landed["last_landed"]["at"] == max(finished)  # the latest landing, as the batches' own status says


def test_a_failing_destination_says_why_and_is_up_to_date_again_once_fixed(
    api: httpx.Client, contract: Contract, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
) -> None:
    batch_id = failed_batch(api, services, azurite, blob_service)  # its container was deleted before the export
    broken = status(api, contract)
    assert broken["up_to_date"] is False and broken["counts"] == {**NOTHING, "failed": 1}
    assert broken["reasons"][0].startswith("1 batch(es) failed and wait for a retry")
    error = broken["last_error"]
    assert error["batch_id"] == batch_id and error["code"] == "container_not_found" and error["will_retry"] is False
    assert error["message"] == api.get(f"/api/batches/{batch_id}").json()["last_error"]["message"]
    assert "sig=" not in api.get("/api/destinations/acme/status").text

    # The customer fixes it: a new container and a new SAS. The save re-queues the failed batch, which lands.
    container = blob_service.create_container(f"fixed-{uuid.uuid4().hex[:12]}")
    try:
        make_destination(api, azurite, container)
        assert status(api, contract)["counts"]["pending"] == 1
        assert api.post("/api/exports/run").json()["landed"] == 1
        fixed = status(api, contract)
        assert fixed["up_to_date"] is True and fixed["counts"] == {**NOTHING, "landed_last_24h": 1}
        assert fixed["last_landed"]["batch_id"] == batch_id
        assert fixed["last_error"]["code"] == "container_not_found"  # the latest error, older than the landing
        assert fixed["last_error"]["at"] < fixed["last_landed"]["at"]
    finally:
        container.delete_container()


def test_a_batch_waiting_longer_than_the_threshold_makes_it_not_up_to_date(
    api: httpx.Client, contract: Contract, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 300, "target_file_mb": 64})
    assert status(api, contract)["threshold_seconds"] == 1200  # 15 minutes plus the wait it asked for
    batch = post_batch(api, "acme", list(sample_data.events(2)))
    answer = status(api, contract, threshold_seconds=1)
    while answer["oldest_pending"]["age_seconds"] <= 1:  # a second later, without asserting on time
        answer = status(api, contract, threshold_seconds=1)
    assert answer["up_to_date"] is False and answer["threshold_seconds"] == 1
    (reason,) = answer["reasons"]
    assert reason.startswith(f"batch {batch['batch_id']} was accepted ")
    assert reason.endswith(" ago and is still pending, over the 1 second allowed")

def test_a_destination_deleted_and_created_again_does_not_count_the_earlier_one_s_batches(
    api: httpx.Client, contract: Contract, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
    fresh_container: ContainerClient,
) -> None:
    failed_batch(api, services, azurite, blob_service)
    make_destination(api, azurite, fresh_container)  # new credentials: the failed batch is due again, and lands
    assert api.post("/api/exports/run").json()["landed"] == 1
    failed_batch(api, services, azurite, blob_service)
    post_batch(api, "acme", list(sample_data.events(3)))  # pending when the destination is deleted
    before = status(api, contract)
    assert before["counts"] == {**NOTHING, "pending": 1, "failed": 1, "landed_last_24h": 1}
    assert before["last_error"] and before["last_landed"]

    assert api.delete("/api/destinations/acme", params={"force": "true"}).status_code == 204
    assert api.get("/api/destinations/acme/status").status_code == 404
    make_destination(api, azurite, fresh_container)
    again = status(api, contract)
    assert again["counts"] == NOTHING and again["up_to_date"] is True
    assert again["last_landed"] is None and again["last_error"] is None
    assert not any(hour["batches"] for hour in again["landed_by_hour"])


@pytest.mark.parametrize(("path", "status_code", "code"), [
    ("/api/destinations/nobody/status", 404, "not_found"),
    ("/api/destinations/ACME/status", 422, "validation_failed"),
    ("/api/destinations/a_b/status", 422, "validation_failed"),
    ("/api/destinations/%2e%2e/status", 422, "validation_failed"),
    ("/api/destinations/..%2F..%2Fstates/status", 404, "not_found"),
    ("/api/destinations/%C3%A9t%C3%A9/status", 422, "validation_failed"),
    ("/api/destinations/acme%00/status", 422, "validation_failed"),
    ("/api/destinations/" + "a" * 64 + "/status", 422, "validation_failed"),
    ("/api/destinations/acme/status?threshold_seconds=0", 422, "validation_failed"),
    ("/api/destinations/acme/status?threshold_seconds=604801", 422, "validation_failed"),
    ("/api/destinations/acme/status?threshold_seconds=-5", 422, "validation_failed"),
    ("/api/destinations/acme/status?threshold_seconds=soon", 422, "validation_failed"),
])
def test_hostile_ids_and_thresholds_are_refused_with_words_and_change_nothing(
    api: httpx.Client, contract: Contract, services: Services, azurite: Azurite, fresh_container: ContainerClient,
    path: str, status_code: int, code: str,
) -> None:
    make_destination(api, azurite, fresh_container)
    before = control_blobs(services)
    response = api.get(path)
    assert response.status_code == status_code, response.text
    body = contract.check(response, TEMPLATE)
    assert body["error"]["code"] == code and body["error"]["message"]
    if "threshold_seconds" in path:
        assert [d["field"] for d in body["error"]["details"]] in (["threshold_seconds"], ["query.threshold_seconds"])
    elif status_code == 422:
        assert "destination id must be 3-63 characters" in body["error"]["message"]
    assert control_blobs(services) == before


def test_the_status_needs_the_admin_function_s_key_as_every_destination_route(
    services: Services, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    keys = {"intake": "intake-key-" + uuid.uuid4().hex, "admin": "admin-key-" + uuid.uuid4().hex}
    app = FunctionKeyCheck(secret_watch.watching(create_api(lambda: services)), keys)
    with ApiServer(app) as server, httpx.Client(base_url=server.base_url) as client:
        admin = {"x-functions-key": keys["admin"]}
        token = container_sas(fresh_container.container_name)
        body = sas_destination(azurite.account_url, fresh_container.container_name, token)
        assert client.put("/api/destinations/acme", json=body, headers=admin).status_code == 201
        path = "/api/destinations/acme/status"
        for headers in ({}, {"x-functions-key": keys["intake"]}, {"x-functions-key": "wrong"}):
            refused = client.get(path, headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", headers
        assert client.get(path, headers=admin).status_code == 200
        assert client.get(path, params={"code": keys["admin"]}).json()["destination_id"] == "acme"
