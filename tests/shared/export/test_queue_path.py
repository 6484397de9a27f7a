"""The export queue (issue 14) against Azurite's queue service: intake sends a message per batch, the consumer
exports it with no pass called, the timer sweeps what was lost, duplicates export nothing twice, and a message
whose handling keeps crashing ends in the poison queue with its batch failed and the reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.control.export_queue import ExportQueue, ExportUnit, build_export_queue
from shared.export.queued import QueueOptions, consume_once, handle_message
from shared.export.sweeper import sweep_due
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.export_helpers import jsonl_records, make_destination, manifests, post_batch
from tests.support.azurite import Azurite, connection_string, free_port
from tests.support.sas import container_sas, sas_destination

OPTIONS = QueueOptions(batch_size=8, new_batch_threshold=4, max_dequeue_count=3, visibility_timeout_seconds=0,
                       max_polling_interval_seconds=0.2)


def events(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"event": "Signed up", "ts": 1763629200 + start + i, "$insert_id": f"i{start + i}"} for i in range(count)]


def queue_of(services: Services) -> ExportQueue:
    queue = services.export_queue
    assert queue is not None, "the test Azurite serves queues: the export queue must exist"
    return queue


def drain(services: Services, until: Callable[[], bool], seconds: float = 60) -> None:
    """Consume the export queue, as the host would, until `until()` holds."""
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the queue consumer did not finish in time"
        if consume_once(services, queue_of(services), OPTIONS) == 0:
            time.sleep(0.1)


def status(api: httpx.Client, batch: dict[str, object]) -> dict[str, object]:
    return dict(api.get(str(batch["status_url"])).json())


def test_a_posted_batch_is_exported_by_the_queue_consumer_with_no_pass_called(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    batch = post_batch(api, "acme", events(5))
    assert status(api, batch)["state"] == "pending"
    assert queue_of(services).approximate_length() == 1  # sent once the state was committed
    drain(services, lambda: status(api, batch)["state"] == "landed")
    assert len(jsonl_records(fresh_container)) == 5
    assert queue_of(services).approximate_length() == 0


def test_a_duplicated_message_exports_nothing_twice(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    batch = post_batch(api, "acme", events(4))
    unit = ExportUnit(batch_id=str(batch["batch_id"]), destination_id="acme")
    for _ in range(3):
        queue_of(services).send(unit)
    drain(services, lambda: queue_of(services).approximate_length() == 0)
    landed = status(api, batch)
    assert landed["state"] == "landed" and landed["total_attempts"] == 1
    assert len(jsonl_records(fresh_container)) == 4 and len(manifests(fresh_container)) == 1


def test_queue_down_at_intake_the_batch_is_accepted_and_the_timer_finds_it(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        settings: Settings) -> None:
    """The enqueue is suppressed by a real fault (the queue endpoint refuses connections): the POST still
    answers 202 pending, and once the grace period is over the sweeper sends the message again."""
    make_destination(api, azurite, fresh_container)
    dead = replace_queue(settings, connection_string(azurite.port, queue_port=free_port()))
    services.__dict__["export_queue"] = dead.export_queue  # what intake sends on: nothing listens there
    batch = post_batch(api, "acme", events(3))
    assert status(api, batch)["state"] == "pending"
    del services.__dict__["export_queue"]
    assert queue_of(services).approximate_length() == 0  # the message was lost
    patient = build_services(settings.model_copy(update={"queue_grace_seconds": 3600}))
    assert sweep_due(patient).overdue == 0  # within its grace period, the sweeper leaves it to its message
    swept = sweep_due(build_services(settings.model_copy(update={"queue_grace_seconds": 0})))
    assert (swept.overdue, swept.sent, swept.exported) == (1, 1, None)
    drain(services, lambda: status(api, batch)["state"] == "landed")
    assert len(jsonl_records(fresh_container)) == 3


def replace_queue(settings: Settings, connection: str) -> Services:
    return build_services(settings.model_copy(update={"control_storage_connection": connection}))


def test_without_a_queue_service_the_timer_exports_as_before(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        settings: Settings) -> None:
    make_destination(api, azurite, fresh_container)
    batch = post_batch(api, "acme", events(2))
    blob_only = replace_queue(settings, connection_string(azurite.port))
    assert blob_only.export_queue is None
    swept = sweep_due(blob_only)
    assert swept.exported is not None and swept.exported.landed == 1
    assert status(api, batch)["state"] == "landed"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"batch_id": "../../etc", "destination_id": "acme"}',
                                  orjson.dumps({"v": 9, "batch_id": "b" * 32, "destination_id": "acme"}),
                                  b"[" * 5000])
def test_a_malformed_message_is_logged_and_dropped(services: Services, body: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    queue = queue_of(services)
    queue.ensure()
    queue.queue.send_message(body)
    assert consume_once(services, queue, OPTIONS) == 1
    assert queue.approximate_length() == 0
    assert queue.poison.get_queue_properties().approximate_message_count == 0
    assert "export message dropped" in caplog.text


def test_a_message_whose_handling_keeps_crashing_ends_in_the_poison_queue_and_its_batch_failed(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        blob_service: BlobServiceClient) -> None:
    """The destination's record is unreadable (corrupt JSON in control storage): every handling raises, the
    message is tried max_dequeue_count times, then poisoned, and the batch fails with the reason."""
    make_destination(api, azurite, fresh_container)
    batch = post_batch(api, "acme", events(2))
    services.control.container.upload_blob("destinations/acme.json", b"{corrupt", overwrite=True)
    queue = queue_of(services)
    for _ in range(OPTIONS.max_dequeue_count + 1):
        consume_once(services, queue, OPTIONS)
        time.sleep(0.2)
    failed = status(api, batch)
    assert failed["state"] == "failed"
    error = failed["last_error"]
    assert isinstance(error, dict) and error["code"] == "export_message_poisoned"
    assert "-poison" in str(error["message"]) and "retried" in str(error["message"])
    assert queue.approximate_length() == 0
    assert queue.poison.get_queue_properties().approximate_message_count == 1
    assert jsonl_records(fresh_container) == []


def test_a_backoff_becomes_the_message_visibility_delay(
        api: httpx.Client, settings: Settings, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """A destination that does not answer (nothing listens on its port) is a retryable failure: the consumer
    sends the unit again, visible when the backoff ends, and each attempt is counted once. New credentials
    (a PUT) make it due now, and its message is sent at once."""
    backing_off = build_services(settings.model_copy(update={"retry_base_seconds": 2, "retry_max_seconds": 2}))
    name = fresh_container.container_name
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    body = sas_destination(dead, name, container_sas(name))
    assert api.put("/api/destinations/acme?verify=false", json=body).status_code in (200, 201)
    batch = post_batch(api, "acme", events(3))
    queue = queue_of(backing_off)
    assert consume_once(backing_off, queue, OPTIONS) == 1
    first = status(api, batch)
    assert first["state"] == "pending" and first["attempts"] == 1
    assert consume_once(backing_off, queue, OPTIONS) == 0  # invisible until the backoff ends
    assert queue.approximate_length() == 1
    deadline = time.monotonic() + 15  # the backoff: 2 s times a random factor of 0.5-1.5
    while consume_once(backing_off, queue, OPTIONS) == 0:
        assert time.monotonic() < deadline, "the unit did not become visible when its backoff ended"
        time.sleep(0.2)
    assert status(api, batch)["attempts"] == 2
    body = sas_destination(azurite.account_url, name, container_sas(name))
    assert api.put("/api/destinations/acme", json=body).status_code == 200
    drain(backing_off, lambda: status(api, batch)["state"] == "landed", seconds=30)
    assert status(api, batch)["total_attempts"] == 3
    assert len(jsonl_records(fresh_container)) == 3


def test_coalesced_batches_are_exported_as_one_run_from_their_messages(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    posted = [post_batch(api, "acme", events(3, start=10 * i)) for i in range(6)]
    first = handle_message(services, ExportUnit(batch_id=str(posted[0]["batch_id"]), destination_id="acme").encode())
    assert first.outcome == "landed"
    runs = {status(api, b)["run_id"] for b in posted}
    assert len(runs) == 1 and None not in runs  # the first message's handling took every due batch
    drain(services, lambda: queue_of(services).approximate_length() == 0)
    assert len(manifests(fresh_container)) == 1 and len(jsonl_records(fresh_container)) == 18


def test_a_later_message_of_a_coalesced_run_reads_its_batch_and_nothing_else(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its batch landed with an earlier message's run: one read of its state, no listing of every open marker."""
    make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    posted = [post_batch(api, "acme", events(3, start=10 * i)) for i in range(3)]
    assert handle_message(services, ExportUnit(batch_id=str(posted[0]["batch_id"]),
                                               destination_id="acme").encode()).outcome == "landed"
    sent: list[str] = []
    real_send = RequestsTransport.send

    def counted(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:  # every storage request, still sent
        sent.append(f"{request.method} {request.url.split('?')[0].rsplit('/', 2)[-2]}")
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", counted)
    later = handle_message(services, ExportUnit(batch_id=str(posted[2]["batch_id"]), destination_id="acme").encode())
    assert sent == ["GET destinations", "GET states"], sent
    assert later.outcome == "done" and status(api, posted[2])["state"] == "landed"


def test_a_coalescing_message_reads_its_destinations_newer_markers_not_every_open_batch(
        api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
        fresh_container: ContainerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its run takes its batch and the destination's open batches of its type created after it, found by one listing
    of the destination's newest open markers: not of every open batch of every destination (thousands on a busy
    platform, read by every message). An older open batch is its own message's."""
    coalesce = {"max_delay_seconds": 0, "target_file_mb": 128}
    make_destination(api, azurite, fresh_container, coalesce=coalesce)
    other = blob_service.create_container(f"other-{fresh_container.container_name[-12:]}")
    try:
        make_destination(api, azurite, other, "other")
        for i in range(3):
            post_batch(api, "other", events(2, start=i))  # open batches of another destination
        posted = [post_batch(api, "acme", events(3, start=10 * i)) for i in range(4)]
        listed: list[str] = []
        real_send = RequestsTransport.send

        def watched(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:  # every storage request, still sent
            query = parse_qs(urlsplit(request.url).query)
            if query.get("comp") == ["list"]:
                listed.append(f"{urlsplit(request.url).path.rsplit('/', 1)[-1]}:{query.get('prefix', [''])[0]}")
            return real_send(self, request, **kwargs)

        monkeypatch.setattr(RequestsTransport, "send", watched)
        handled = handle_message(services, ExportUnit(batch_id=str(posted[1]["batch_id"]),
                                                      destination_id="acme").encode())
        assert handled.outcome == "landed"
        assert listed == [f"{services.control.container.container_name}:index/batches/open/acme/"]
        assert [status(api, b)["state"] for b in posted] == ["pending", "landed", "landed", "landed"]
        assert handle_message(services, ExportUnit(batch_id=str(posted[0]["batch_id"]),
                                                   destination_id="acme").encode()).outcome == "landed"
        assert len(manifests(fresh_container)) == 2 and len(jsonl_records(fresh_container)) == 12
    finally:
        other.delete_container()


def test_build_export_queue_needs_a_queue_service(settings: Settings, azurite: Azurite) -> None:
    blob_only = settings.model_copy(update={"control_storage_connection": connection_string(azurite.port)})
    assert build_export_queue(blob_only) is None
    dev = settings.model_copy(update={"control_storage_connection": "UseDevelopmentStorage=true"})
    assert build_export_queue(dev) is not None
    azure = settings.model_copy(update={"control_storage_connection":
                                        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
                                        "EndpointSuffix=core.windows.net"})
    queue = build_export_queue(azure)
    assert queue is not None and queue.queue.url.startswith("https://acct.queue.core.windows.net/")
