"""Auto-pause (issue 17): after AUTO_PAUSE_AFTER consecutive failed export runs a destination is paused; its
batches are still accepted and staged and wait, the queue consumer does not spin on them, its status says why,
and once it is resumed (POST .../resume, or new credentials) every batch, those accepted while it was paused
included, lands: nothing is lost. A coalesced run counts once; a landing ends the streak."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from shared.alerts.sweep import sweep_alerts
from shared.export.sweeper import sweep_due
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.export_helpers import drain_queue, jsonl_records, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

LONG_LIVED = datetime.now(UTC) + timedelta(days=60)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auto_pause_after": 3})


def events(count: int, start: int) -> list[dict[str, object]]:
    return [{"event": "Viewed", "ts": 1763629200 + start + i, "$insert_id": f"a{start + i}"} for i in range(count)]


def drain(services: Services, until: Callable[[], bool] = lambda: False) -> None:
    drain_queue(services, until, seconds=90)


def states(api: httpx.Client, batches: list[dict[str, object]]) -> list[str]:
    return [str(api.get(str(b["status_url"])).json()["state"]) for b in batches]


def missing_container(api: httpx.Client, azurite: Azurite, blob_service: BlobServiceClient, **extra: object) -> str:
    """A destination "acme" whose container does not exist yet: each export fails (container_not_found)."""
    name = f"later-{uuid.uuid4().hex[:12]}"
    body = sas_destination(azurite.account_url, name, container_sas(name, expiry=LONG_LIVED), **extra)
    assert api.put("/api/destinations/acme?verify=false", json=body).status_code == 201
    return name


@pytest.mark.parametrize("resume_by", ["resume", "new credentials"])
def test_auto_pause_then_resume_loses_nothing(api: httpx.Client, services: Services, azurite: Azurite,
                                              blob_service: BlobServiceClient, resume_by: str) -> None:
    name = missing_container(api, azurite, blob_service)
    failing = [post_batch(api, "acme", events(2, start=10 * i)) for i in range(3)]
    drain(services, lambda: states(api, failing) == ["failed"] * 3)
    paused = api.get("/api/destinations/acme").json()["paused"]
    assert paused["by"] == "auto" and paused["failed_runs"] == 3
    assert "3 consecutive failed export runs" in paused["reason"] and "container_not_found" in paused["reason"]
    status = api.get("/api/destinations/acme/status").json()
    assert status["paused"] == paused and not status["up_to_date"] and status["reasons"][0].startswith("paused")
    assert status["consecutive_failed_runs"] == 3 and status["auto_pause_after"] == 3

    waiting = [post_batch(api, "acme", events(3, start=100 + 10 * i)) for i in range(4)]  # accepted while paused
    drain(services)
    assert states(api, waiting) == ["pending"] * 4
    assert services.export_queue is not None and services.export_queue.approximate_length() == 0  # no spinning
    patient = build_services(services.settings.model_copy(update={"queue_grace_seconds": 0}))
    assert sweep_due(patient).sent == 0  # nor does the timer send them again while it is paused
    sweep_alerts(services)  # nor does it pause it twice, or resume it
    assert api.get("/api/destinations/acme").json()["paused"] == paused

    container = blob_service.create_container(name)
    try:
        if resume_by == "resume":
            assert api.post("/api/destinations/acme/resume").json()["paused"] is None
        else:
            body = sas_destination(azurite.account_url, name, container_sas(name, expiry=LONG_LIVED))
            assert api.put("/api/destinations/acme", json=body).json()["paused"] is None
        assert api.get("/api/destinations/acme/status").json()["consecutive_failed_runs"] == 0  # counted afresh
        everything = failing + waiting
        drain(services, lambda: states(api, everything) == ["landed"] * 7)
        assert len(jsonl_records(container)) == 3 * 2 + 4 * 3
        status = api.get("/api/destinations/acme/status").json()
        assert status["up_to_date"] and status["paused"] is None and status["consecutive_failed_runs"] == 0
    finally:
        container.delete_container()


def test_a_coalesced_run_counts_once(api: httpx.Client, services: Services, azurite: Azurite,
                                     blob_service: BlobServiceClient) -> None:
    missing_container(api, azurite, blob_service, coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    batches = [post_batch(api, "acme", events(2, start=10 * i)) for i in range(5)]
    drain(services, lambda: states(api, batches) == ["failed"] * 5)
    runs = {api.get(str(b["status_url"])).json()["run_id"] for b in batches}
    status = api.get("/api/destinations/acme/status").json()
    assert status["consecutive_failed_runs"] == len(runs) < 3  # five batches, in fewer than three runs
    assert status["paused"] is None


def test_a_landing_ends_the_streak(api: httpx.Client, services: Services, azurite: Azurite,
                                   blob_service: BlobServiceClient) -> None:
    name = missing_container(api, azurite, blob_service)
    two = [post_batch(api, "acme", events(1, start=i)) for i in range(2)]
    drain(services, lambda: states(api, two) == ["failed"] * 2)
    container = blob_service.create_container(name)
    try:
        ok = post_batch(api, "acme", events(1, start=50))
        drain(services, lambda: states(api, [ok]) == ["landed"])
        container.delete_container()
        two_more = [post_batch(api, "acme", events(1, start=60 + i)) for i in range(2)]
        drain(services, lambda: states(api, two_more) == ["failed"] * 2)
        status = api.get("/api/destinations/acme/status").json()
        assert status["consecutive_failed_runs"] == 2 and status["paused"] is None  # 4 failures, not in a row
    finally:
        if blob_service.get_container_client(name).exists():
            container.delete_container()


def test_zero_never_pauses(api: httpx.Client, settings: Settings, azurite: Azurite,
                           blob_service: BlobServiceClient) -> None:
    services = build_services(settings.model_copy(update={"auto_pause_after": 0}))
    missing_container(api, azurite, blob_service)
    batches = [post_batch(api, "acme", events(1, start=i)) for i in range(4)]
    drain(services, lambda: states(api, batches) == ["failed"] * 4)
    assert api.get("/api/destinations/acme").json()["paused"] is None


def test_the_timer_makes_a_pause_that_the_export_did_not(api: httpx.Client, settings: Settings, azurite: Azurite,
                                                         blob_service: BlobServiceClient) -> None:
    """The failures were counted but no pause followed (a crash after the states were saved, or AUTO_PAUSE_AFTER
    lowered since): the timer's scan pauses the destination, once, and raises its alert."""
    lenient = build_services(settings.model_copy(update={"auto_pause_after": 10}))
    missing_container(api, azurite, blob_service)
    batches = [post_batch(api, "acme", events(1, start=i)) for i in range(3)]
    drain(lenient, lambda: states(api, batches) == ["failed"] * 3)
    assert api.get("/api/destinations/acme").json()["paused"] is None
    strict = build_services(settings)
    swept = sweep_alerts(strict, scan_every=timedelta(0))
    assert swept.raised is not None and swept.raised.auto_paused == 1
    paused = api.get("/api/destinations/acme").json()["paused"]
    assert paused is not None and paused["by"] == "auto"
    assert {a["kind"] for a in api.get("/api/destinations/acme/status").json()["alerts"]} >= {"paused",
                                                                                               "batch_failed"}


def test_a_resume_starts_the_count_again(api: httpx.Client, services: Services, azurite: Azurite,
                                         blob_service: BlobServiceClient) -> None:
    missing_container(api, azurite, blob_service)
    failing = [post_batch(api, "acme", events(1, start=i)) for i in range(3)]
    drain(services, lambda: states(api, failing) == ["failed"] * 3)
    assert api.get("/api/destinations/acme").json()["paused"] is not None
    for batch in failing:  # discarded: the resume does not retry them
        api.post(f"/api/batches/{batch['batch_id']}/discard")
    api.post("/api/destinations/acme/resume")
    assert api.get("/api/destinations/acme/status").json()["consecutive_failed_runs"] == 0
    sweep_alerts(services, scan_every=timedelta(0))  # the streak before the resume pauses nothing
    assert api.get("/api/destinations/acme").json()["paused"] is None
    one = post_batch(api, "acme", events(1, start=10))
    drain(services, lambda: states(api, [one]) == ["failed"])
    status = api.get("/api/destinations/acme/status").json()
    assert status["consecutive_failed_runs"] == 1 and status["paused"] is None
