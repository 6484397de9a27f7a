"""Helpers for export tests: create destinations, post batches, read what landed."""

from __future__ import annotations

import csv
import gzip
import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.control import batch_index
from shared.control.store import ControlStore
from shared.export.queued import QueueOptions, consume_once
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination


def make_destination(api: httpx.Client, azurite: Azurite, container: ContainerClient, dest_id: str = "acme",
                     **extra: Any) -> str:
    token = container_sas(container.container_name, delete=extra.pop("delete", True),
                          expiry=extra.pop("expiry", None))
    body = sas_destination(azurite.account_url, container.container_name, token, **extra)
    response = api.put(f"/api/destinations/{dest_id}", json=body)
    assert response.status_code in (200, 201), response.text
    return dest_id


def post_batch(api: httpx.Client, dest_id: str, records: list[dict[str, Any]], record_type: str = "events",
               **headers: str) -> dict[str, Any]:
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    response = api.post(f"/api/destinations/{dest_id}/batches", params={"type": record_type}, content=body,
                        headers={"content-type": "application/x-ndjson", **headers})
    assert response.status_code == 202, response.text
    return dict(response.json())


def blob_names(container: ContainerClient) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def read_blob(container: ContainerClient, name: str) -> bytes:
    data = container.download_blob(name).readall()
    return gzip.decompress(data) if name.endswith(".gz") else data


def data_files(container: ContainerClient) -> list[str]:
    return [n for n in blob_names(container) if "/_manifests/" not in n and not n.endswith("_export_probe.txt")]


def jsonl_records(container: ContainerClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in data_files(container):
        out.extend(orjson.loads(line) for line in read_blob(container, name).splitlines() if line)
    return out


def csv_rows(container: ContainerClient, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_blob(container, name).decode("utf-8"), newline="")))


def manifests(container: ContainerClient) -> list[dict[str, Any]]:
    return [orjson.loads(container.download_blob(n).readall()) for n in blob_names(container) if "/_manifests/" in n]


def failed_batch(api: httpx.Client, services: Services, azurite: Azurite, blob_service: BlobServiceClient,
                 records: int = 4) -> str:
    """A batch of destination "acme" that failed: its container was deleted before the export pass."""
    container = blob_service.create_container(f"gone-{uuid.uuid4().hex[:12]}")
    make_destination(api, azurite, container)
    batch_id = str(post_batch(api, "acme", list(sample_data.events(records)))["batch_id"])
    container.delete_container()
    assert run_export_pass(services).failed == 1
    return batch_id


# The export queue consumed in tests: every message visible again at once, polled quickly.
QUEUE_OPTIONS = QueueOptions(batch_size=16, new_batch_threshold=8, max_dequeue_count=3, visibility_timeout_seconds=0,
                             max_polling_interval_seconds=0.2)


def drain_queue(services: Services, until: Callable[[], bool] = lambda: False, seconds: float = 60) -> None:
    """Consume the export queue as the host would until `until()` holds, or until it is empty."""
    queue = services.export_queue
    assert queue is not None
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the queue consumer did not finish in time"
        if consume_once(services, queue, QUEUE_OPTIONS) == 0:
            if queue.approximate_length() == 0 and not until():
                return
            time.sleep(0.1)


def is_open(control: ControlStore, batch_id: str) -> bool:
    """Whether the batch has an open marker (staging, pending or running): what the export finds due batches by."""
    return any(marker.batch_id == batch_id for marker in batch_index.open_batches(control))
