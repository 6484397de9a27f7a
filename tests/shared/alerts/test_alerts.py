"""Alerts against a local receiver (issue 17): a failed batch, a pause, an expiring SAS token and a recovery each
produce one alert, signed as Standard Webhooks say (checked here with code of the test's own), and a second
pass on the same day sends no second one; a receiver that is down costs its own alerts a retry and nothing else;
no alert holds a secret (the session's secret watch reads every alert the receivers got)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from pydantic import SecretStr

from scripts import sample_data
from shared.alerts.sweep import sweep_alerts
from shared.export.queued import QueueOptions, consume_once
from shared.export.runner import run_export_pass
from shared.export.scheduled import run_scheduled
from shared.secrets.names import ALERT_SIGNING_SECRET
from shared.secrets.store import SecretNotFoundError
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.alerts.receiver import Receiver, receiver, verify
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite, free_port
from tests.support.sas import container_sas

NOW_SCAN = timedelta(0)  # scan every destination at each pass: the dedupe must hold anyway
LONG_LIVED = datetime.now(UTC) + timedelta(days=60)  # a SAS token that raises no expiry alert


@pytest.fixture
def app_hook() -> Iterator[Receiver]:
    with receiver() as hook:
        yield hook


@pytest.fixture
def settings(settings: Settings, app_hook: Receiver) -> Settings:
    """ALERT_WEBHOOK_URL at the local receiver (loopback http: the tests' ALLOW_HTTP_LOOPBACK)."""
    return settings.model_copy(update={"alert_webhook_url": SecretStr(app_hook.url)})


def signing_secret(services: Services) -> str:
    return services.secrets.store.get_secret(ALERT_SIGNING_SECRET)


def failing_destination(api: httpx.Client, azurite: Azurite, blob_service: BlobServiceClient,
                        dest_id: str = "acme") -> str:
    """A destination whose container is gone: every export fails with container_not_found (not retried)."""
    container = blob_service.create_container(f"gone-{uuid.uuid4().hex[:12]}")
    make_destination(api, azurite, container, dest_id, expiry=LONG_LIVED)
    container.delete_container()
    return container.container_name


def fail_one(api: httpx.Client, services: Services, dest_id: str = "acme") -> str:
    batch_id = str(post_batch(api, dest_id, list(sample_data.events(3)))["batch_id"])
    outcome = run_export_pass(services, due=[(batch_id, dest_id)])
    assert outcome.failed == 1, outcome
    return batch_id


def test_a_failed_batch_raises_one_signed_alert_and_its_recovery_another(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
        app_hook: Receiver) -> None:
    name = failing_destination(api, azurite, blob_service)
    first = fail_one(api, services)
    assert app_hook.received == []  # the export raised the alert; only the timer sends it
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert app_hook.kinds() == ["batch_failed"]
    alert = app_hook.received[0]
    verify(alert, signing_secret(services))
    body = alert.json
    assert body["type"] == "export.destination.batch_failed" and body["destination_id"] == "acme"
    assert body["data"]["batch_id"] == first and body["data"]["error_code"] == "container_not_found"
    assert first in body["text"] and "container" in body["text"]
    assert alert.headers["webhook-id"] == body["alert_id"] and alert.headers["content-type"] == "application/json"

    second = fail_one(api, services)  # the same condition, the same day: no second alert, whatever the passes
    sweep_alerts(services, scan_every=NOW_SCAN)
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert app_hook.kinds() == ["batch_failed"]

    blob_service.create_container(name)
    try:
        assert api.post(f"/api/batches/{second}/retry").status_code == 200
        assert run_export_pass(services, due=[(second, "acme")]).landed == 1
        sweep_alerts(services, scan_every=NOW_SCAN)
        assert app_hook.kinds() == ["batch_failed", "recovered"]
        recovered = app_hook.received[1]
        verify(recovered, signing_secret(services))
        assert recovered.json["data"]["failed_runs"] == 2 and "recovered" in recovered.json["text"]
    finally:
        blob_service.delete_container(name)

    status = api.get("/api/destinations/acme/status").json()
    shown = {a["kind"]: a for a in status["alerts"]}
    assert set(shown) == {"batch_failed", "recovered"}
    delivery = shown["batch_failed"]["deliveries"]["app"]
    assert shown["batch_failed"]["state"] == "delivered" and delivery["status_code"] == 200
    assert delivery["origin"] == app_hook.url.split("/hooks/")[0] and delivery["attempts"] == 1


def test_a_pause_raises_one_signed_alert(api: httpx.Client, settings: Settings, azurite: Azurite,
                                         blob_service: BlobServiceClient, app_hook: Receiver) -> None:
    services = build_services(settings.model_copy(update={"auto_pause_after": 2}))
    failing_destination(api, azurite, blob_service)
    fail_one(api, services)
    fail_one(api, services)  # the second consecutive failed run: paused at the end of its pass
    paused = api.get("/api/destinations/acme").json()["paused"]
    assert paused["by"] == "auto" and paused["failed_runs"] == 2 and "container_not_found" in paused["reason"]
    sweep_alerts(services, scan_every=NOW_SCAN)
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert sorted(app_hook.kinds()) == ["batch_failed", "paused"]
    alert = next(r for r in app_hook.received if r.kind == "paused")
    verify(alert, signing_secret(services))
    assert alert.json["data"]["by"] == "auto" and "paused automatically" in alert.json["text"]
    assert "/api/destinations/acme/resume" in alert.json["text"]


def test_an_operator_pause_raises_one_alert_and_pausing_again_none(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        app_hook: Receiver) -> None:
    make_destination(api, azurite, fresh_container, expiry=LONG_LIVED)
    api.post("/api/destinations/acme/pause", json={"reason": "customer rotating keys"})
    api.post("/api/destinations/acme/resume")
    api.post("/api/destinations/acme/pause", json={"reason": "again"})
    sweep_alerts(services, scan_every=NOW_SCAN)
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert app_hook.kinds() == ["paused"]  # one per condition per destination per day
    assert "customer rotating keys" in app_hook.received[0].json["text"]
    verify(app_hook.received[0], signing_secret(services))


def test_an_expiring_sas_raises_one_alert_a_day_then_its_expiry_another(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        app_hook: Receiver) -> None:
    expiry = datetime.now(UTC) + timedelta(days=2)
    make_destination(api, azurite, fresh_container, expiry=expiry)
    sweep_alerts(services, scan_every=NOW_SCAN)
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert app_hook.kinds() == ["sas_expiring"]
    alert = app_hook.received[0]
    verify(alert, signing_secret(services))
    assert alert.json["data"]["days_left"] in (1.9, 2.0) and expiry.strftime("%Y-%m-%d") in alert.json["text"]

    later = datetime.now(UTC) + timedelta(days=3)  # the token has expired: another condition, another alert
    sweep_alerts(services, scan_every=NOW_SCAN, clock=lambda: later)
    sweep_alerts(services, scan_every=NOW_SCAN, clock=lambda: later)
    assert app_hook.kinds() == ["sas_expiring", "sas_expired"]
    verify(app_hook.received[1], signing_secret(services))


def test_the_scan_runs_at_most_every_hour(api: httpx.Client, services: Services, azurite: Azurite,
                                          fresh_container: ContainerClient, app_hook: Receiver) -> None:
    sweep_alerts(services)  # the first scan (nothing to say yet)
    make_destination(api, azurite, fresh_container, expiry=datetime.now(UTC) + timedelta(days=1))
    sweep_alerts(services)
    assert app_hook.kinds() == []  # scanned less than an hour ago
    sweep_alerts(services, clock=lambda: datetime.now(UTC) + timedelta(minutes=61))
    assert app_hook.kinds() == ["sas_expiring"]


def test_a_receiver_that_is_down_costs_its_own_alerts_a_retry_and_nothing_else(
        api: httpx.Client, settings: Settings, azurite: Azurite, blob_service: BlobServiceClient,
        fresh_container: ContainerClient, app_hook: Receiver) -> None:
    """ALERT_WEBHOOK_URL answers 503, then nothing listens there: the destination's own webhook gets its alert at
    once, exports land, the timer's other work runs, and the app's alert is retried after its backoff with the
    same webhook-id until it is delivered."""
    down = settings.model_copy(update={"alert_webhook_url": SecretStr(f"http://127.0.0.1:{free_port()}/hook")})
    services = build_services(down)
    with receiver() as own:
        failing_destination(api, azurite, blob_service)
        body = api.get("/api/destinations/acme").json()
        assert api.put("/api/destinations/acme?verify=false", json={
            "endpoint": body["endpoint"], "container": body["container"],
            "auth": {"type": "sas", "secret_name": body["auth"]["secret_name"]},
            "alerts": {"webhook_url": own.url}}).status_code == 200
        fail_one(api, services)

        make_destination(api, azurite, fresh_container, "good", expiry=LONG_LIVED)  # exports carry on
        good = post_batch(api, "good", list(sample_data.events(5)))
        queue = services.export_queue
        assert queue is not None
        options = QueueOptions(max_dequeue_count=3, visibility_timeout_seconds=0)
        while consume_once(services, queue, options):
            pass
        assert api.get(str(good["status_url"])).json()["state"] == "landed"
        assert len(jsonl_records(fresh_container)) == 5

        run_scheduled(services)  # the timer: overdue batches, alerts, retention, all of it runs
        assert own.kinds() == ["batch_failed"]  # the destination's own webhook did not wait for the other
        alert = api.get("/api/destinations/acme/status").json()["alerts"][0]
        app = alert["deliveries"]["app"]
        assert alert["state"] == "pending" and app["state"] == "pending" and app["attempts"] == 1
        assert "could not connect to http://127.0.0.1:" in app["last_error"] and "/hook" not in app["last_error"]
        assert alert["deliveries"]["destination"]["state"] == "delivered"

        sweep_alerts(services)  # not due yet: its backoff holds
        assert api.get("/api/destinations/acme/status").json()["alerts"][0]["deliveries"]["app"]["attempts"] == 1

        back = build_services(settings)  # ALERT_WEBHOOK_URL answers again, after the backoff
        app_hook.status = 503
        sweep_alerts(back, clock=lambda: datetime.now(UTC) + timedelta(minutes=2))
        retried = api.get("/api/destinations/acme/status").json()["alerts"][0]["deliveries"]["app"]
        assert retried["attempts"] == 2 and retried["status_code"] == 503 and "answered 503" in retried["last_error"]
        app_hook.status = 200
        sweep_alerts(back, clock=lambda: datetime.now(UTC) + timedelta(minutes=10))
        final = api.get("/api/destinations/acme/status").json()["alerts"][0]
        assert final["state"] == "delivered" and final["deliveries"]["app"]["attempts"] == 3
        ids = {r.headers["webhook-id"] for r in [*own.received, *app_hook.received]}
        assert len(ids) == 1  # every delivery of one alert, to either target, under one id
        for received in [*own.received, *app_hook.received[-1:]]:
            verify(received, signing_secret(back))


def test_a_destination_webhook_is_a_secret_shown_only_by_its_origin(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        blob_service: BlobServiceClient) -> None:
    with receiver() as own:
        make_destination(api, azurite, fresh_container, alerts={"webhook_url": own.url}, expiry=LONG_LIVED)
        shown = api.get("/api/destinations/acme").json()["alerts"]
        assert shown["webhook_origin"] == own.url.split("/hooks/")[0]
        assert services.secrets.get(shown["webhook_secret_name"]) == own.url
        stored = services.control.container.download_blob("destinations/acme.json").readall().decode()
        assert own.path not in stored and shown["webhook_secret_name"] in stored
        body = {"endpoint": azurite.account_url, "container": fresh_container.container_name,
                "auth": {"type": "sas", "sas_token": container_sas(fresh_container.container_name)}}
        kept = api.put("/api/destinations/acme", json={**body, "alerts": {
            "webhook_secret_name": shown["webhook_secret_name"]}})
        assert kept.status_code == 200 and kept.json()["alerts"] == shown
        other = api.put("/api/destinations/acme", json={**body, "alerts": {"webhook_secret_name": "someone-else"}})
        assert other.status_code == 422
        assert other.json()["error"]["details"][0]["field"] == "alerts.webhook_secret_name"
        removed = api.put("/api/destinations/acme", json=body)
        assert removed.status_code == 200 and removed.json()["alerts"] is None
        with pytest.raises(SecretNotFoundError):  # deleted with the webhook it held
            services.secrets.store.get_secret(shown["webhook_secret_name"])


def test_no_alert_holds_a_secret(api: httpx.Client, services: Services, azurite: Azurite,
                                 blob_service: BlobServiceClient, app_hook: Receiver) -> None:
    """Besides the secret watch (every alert a receiver got is one of its texts): the SAS token, the signing
    secret and the webhook URL are nowhere in what was sent, headers included."""
    failing_destination(api, azurite, blob_service)
    fail_one(api, services)
    api.post("/api/destinations/acme/pause")
    sweep_alerts(services, scan_every=NOW_SCAN)
    assert sorted(app_hook.kinds()) == ["batch_failed", "paused"]
    token = services.secrets.store.get_secret(api.get("/api/destinations/acme").json()["auth"]["secret_name"])
    secret = signing_secret(services)
    for received in app_hook.received:
        sent = received.body.decode() + json.dumps(received.headers)
        for value in (token, token.split("sig=")[1].split("&")[0], secret, secret.removeprefix("whsec_"),
                      app_hook.path):
            assert value not in sent


def test_a_crash_between_a_change_and_its_alert_loses_no_alert_and_doubles_none(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
        app_hook: Receiver) -> None:
    """The alerts the changes raised are removed before any delivery, as if each change's process had died right
    after committing it: the timer raises each again from what is stored (the failed marker, the paused record,
    the activity's recovery), and delivers each once, however often it runs."""
    name = failing_destination(api, azurite, blob_service)
    failed = fail_one(api, services)
    api.post("/api/destinations/acme/pause", json={"reason": "lost alert"})
    api.post("/api/destinations/acme/resume")
    blob_service.create_container(name)
    try:
        assert run_export_pass(services, due=[(failed, "acme")]).landed == 1  # the resume made it due: recovered
    finally:
        blob_service.delete_container(name)
    outbox = [b.name for b in services.control.container.list_blobs(name_starts_with="alerts/outbox/acme/")]
    assert sorted(n.rsplit("/", 1)[1] for n in outbox) == ["batch_failed.json", "paused.json", "recovered.json"]
    for blob in outbox:
        services.control.delete(blob)

    for _ in range(3):
        sweep_alerts(services, scan_every=NOW_SCAN)
    assert sorted(app_hook.kinds()) == ["batch_failed", "paused", "recovered"]
    for received in app_hook.received:
        verify(received, signing_secret(services))
    assert {r.json["data"].get("batch_id") for r in app_hook.received if r.kind != "paused"} == {failed}


def test_a_delivery_whose_outcome_was_lost_is_sent_again_under_the_same_id(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        app_hook: Receiver) -> None:
    """The receiver answered but the process died before saving it: the alert is sent again, with the same
    webhook-id, which a receiver following Standard Webhooks drops (at least once, never two alerts)."""
    make_destination(api, azurite, fresh_container, expiry=LONG_LIVED)
    api.post("/api/destinations/acme/pause")
    outbox = services.control
    [blob] = [b.name for b in outbox.container.list_blobs(name_starts_with="alerts/outbox/acme/")]
    before = outbox.get(blob)
    assert before is not None
    sweep_alerts(services)
    outbox.put(blob, before.data, metadata={"state": "pending", "due": "0", "kind": "paused"})  # outcome lost
    sweep_alerts(services)
    assert app_hook.kinds() == ["paused", "paused"]
    assert len({r.headers["webhook-id"] for r in app_hook.received}) == 1
