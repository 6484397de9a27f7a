"""Control storage unreachable or failing at intake: a 503 with a clear message, and nothing half-staged.

Control storage is a second Azurite here (stopped and started by the test), reached directly or through
the fault proxy. The services' control client retries once, 0.1 s apart, instead of the app's ~17 s of
backoff, so a refused request answers quickly; the outcome is the same.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry

from scripts import sample_data
from shared.control.batches import now_utc
from shared.control.store import ControlStore
from shared.export.runner import run_export_pass
from shared.secrets.cache import CachedSecrets
from shared.secrets.local_store import LocalSecretStore
from shared.services import Services
from shared.settings import Settings
from tests.reliability.fault_helpers import (
    assert_landed_exactly_once,
    control_names,
    ndjson,
    report,
    running_azurite,
    scaled,
    state,
)
from tests.shared.export_helpers import make_destination
from tests.support.azurite import Azurite, connection_string
from tests.support.fault_proxy import FaultProxy
from tests.support.sas import container_sas, sas_destination

HALF_STAGED = ("staged/", "index/batches/open/", "states/")


@pytest.fixture(scope="module")
def control_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path_factory, "control-azurite")


@pytest.fixture
def proxy(control_azurite: Azurite) -> Iterator[FaultProxy]:
    if control_azurite.process is None:
        control_azurite.start()
    server = FaultProxy(upstream_port=control_azurite.port).start()
    yield server
    server.stop()


def quick_services(settings: Settings, port: int) -> Services:
    """Services whose control storage is the Azurite (or proxy) on `port`, with one quick in-call retry."""
    conn = connection_string(port)
    container = BlobServiceClient.from_connection_string(
        conn, retry_policy=LinearRetry(backoff=0.1, random_jitter_range=0, retry_total=1), connection_timeout=5,
        read_timeout=10,
    ).get_container_client(settings.control_container)
    changed = settings.model_copy(update={"control_storage_connection": conn})
    secrets = CachedSecrets(LocalSecretStore(settings.local_secrets_path), settings.secret_cache_ttl_seconds)
    return Services(changed, ControlStore(container), secrets)


@pytest.fixture
def services(request: pytest.FixtureRequest, settings: Settings, control_azurite: Azurite,
             proxy: FaultProxy) -> Services:
    """Through the fault proxy, or straight to the control Azurite with `parametrize("services", ["direct"])`."""
    direct = getattr(request, "param", "proxy") == "direct"
    return quick_services(settings, control_azurite.port if direct else proxy.port)


DIRECT = pytest.mark.parametrize("services", ["direct"], indirect=True)


def post(api: httpx.Client, dest: str, body: bytes) -> httpx.Response:
    return api.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=body,
                    headers={"content-type": "application/x-ndjson"})


@DIRECT
def test_control_storage_down_at_intake_answers_503_and_stages_nothing(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    control_azurite: Azurite,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    body = ndjson(list(sample_data.events(scaled(300), hours=3)))
    control_azurite.stop()
    try:
        refused = post(api, dest, body)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "service_unavailable"
        assert error["message"].startswith("control storage is unreachable or failing (")
        assert error["message"].endswith("nothing was changed, retry later")
        assert api.post("/api/exports/run").status_code == 503  # the timer pass, too, stops with a clear error
    finally:
        control_azurite.start()

    assert control_names(services, *HALF_STAGED) == []
    accepted = post(api, dest, body)  # the platform's retry
    assert accepted.status_code == 202, accepted.text
    bid, records = accepted.json()["batch_id"], accepted.json()["records"]
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: records})
    report("control_storage_down_at_intake", refused_status=refused.status_code, half_staged_after=0, **counts)


def test_state_write_failing_at_the_commit_point_leaves_nothing(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, proxy: FaultProxy
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    body = ndjson(list(sample_data.events(scaled(300), hours=3)))  # three partitions: three staged blobs
    # Every write of the state document (the commit point) fails; the staged blobs before it succeeded.
    rule = proxy.fail(503, when=lambda method, path: method == "PUT" and "/states/" in path)
    refused = post(api, dest, body)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["message"].endswith("nothing was changed, retry later")
    assert rule.hits >= 1
    assert control_names(services, *HALF_STAGED) == []  # intake cleaned up what it had staged

    proxy.clear()
    accepted = post(api, dest, body)
    assert accepted.status_code == 202
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {accepted.json()["batch_id"]: accepted.json()["records"]})
    report("control_state_write_fails", injected=rule.hits, half_staged_after=0, **counts)


def test_control_storage_lost_mid_staging_is_collected_later(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, proxy: FaultProxy
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    body = ndjson(list(sample_data.events(scaled(300), hours=3)))
    down = threading.Event()

    def after_the_staged_blob(method: str, path: str) -> bool:
        # The batch's one staged blob is committed; then storage goes away for good, before the state is
        # written: even intake's clean-up cannot reach it.
        if down.is_set():
            return True
        if method == "PUT" and "/staged/" in path and "comp=blocklist" in path:
            down.set()
        return False

    proxy.fail(503, when=after_the_staged_blob)
    refused = post(api, dest, body)
    assert refused.status_code == 503, refused.text
    proxy.clear()

    left = control_names(services, *HALF_STAGED)
    assert not any(name.startswith("states/") for name in left)  # never visible as a batch
    assert api.get("/api/batches").json()["batches"] == []
    garbage = [name for name in left if name.startswith("staged/")]
    assert len(garbage) == 1  # the batch's one staged blob
    assert len([name for name in left if name.startswith("index/batches/open/")]) == 1  # its staging marker

    now = run_export_pass(services)  # too young to be garbage: an intake may still be writing it
    assert (now.landed, now.failed) == (0, 0)
    assert control_names(services, *HALF_STAGED) == left
    later = run_export_pass(services, clock=lambda: now_utc() + timedelta(minutes=16))
    assert (later.landed, later.failed) == (0, 0)
    assert control_names(services, *HALF_STAGED) == []

    accepted = post(api, dest, body)
    assert accepted.status_code == 202
    bid = accepted.json()["batch_id"]
    assert run_export_pass(services).landed == 1
    assert state(services, bid)["total_attempts"] == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: accepted.json()["records"]})
    report("control_lost_mid_staging", left_behind=len(left), collected_after_minutes=16, **counts)


@DIRECT
def test_destination_save_refused_when_control_storage_is_down(
    api: httpx.Client, azurite: Azurite, services: Services, control_azurite: Azurite
) -> None:
    container = f"dest-{uuid.uuid4().hex[:12]}"
    body = sas_destination(azurite.account_url, container, container_sas(container))
    control_azurite.stop()
    try:
        response = api.put("/api/destinations/later", json=body)
    finally:
        control_azurite.start()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert api.get("/api/destinations/later").status_code == 404  # nothing half-saved


def test_lost_answer_at_the_commit_point_is_still_one_batch(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, proxy: FaultProxy
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    body = ndjson(list(sample_data.events(scaled(300), hours=3)))
    # The state write reaches storage, but its answer (and the SDK's retry's answer) never comes back.
    rule = proxy.fail(None, times=2, forward=True, when=lambda method, path: method == "PUT" and "/states/" in path)
    accepted = post(api, dest, body)
    assert rule.hits == 2
    assert accepted.status_code == 202, accepted.text  # it was committed, so it is accepted, once
    bid = accepted.json()["batch_id"]
    assert [b["batch_id"] for b in api.get("/api/batches").json()["batches"]] == [bid]
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: accepted.json()["records"]})
    report("control_commit_answer_lost", injected=rule.hits, batches_created=1, **counts)
