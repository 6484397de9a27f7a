"""Several instances (issue 14): consumer processes (`python -m scripts.worker`, as separate Functions instances
would be) share one export queue. Every batch lands once, none is exported by two, and a worker killed
mid-export leaves messages that reappear once their hold ends and are finished by the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
from azure.storage.blob import BlobServiceClient

from shared.control.batches import STATES_PREFIX
from shared.services import Services
from shared.settings import Settings
from tests.shared.export_helpers import data_files, make_destination, manifests, read_blob
from tests.support.azurite import Azurite

REPO_ROOT = Path(__file__).resolve().parents[2]
BATCHES = 300
DESTINATIONS = 6  # the odd ones coalesce
WORKERS = 4


def start_worker(settings: Settings, azurite: Azurite, log: Path, hold_seconds: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"AZURITE_PORT", "CONTROL_STORAGE_CONNECTION"}},
        "AzureWebJobsStorage": azurite.connection_string, "CONTROL_CONTAINER": settings.control_container,
        "EXPORT_QUEUE_NAME": settings.export_queue_name, "LOCAL_SECRETS_PATH": str(settings.local_secrets_path),
        "KEY_VAULT_URL": "", "ALLOW_HTTP_LOOPBACK": "true", "LOG_LEVEL": "INFO", "RETRY_BASE_SECONDS": "1",
    }
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "scripts.worker", "--hold-seconds", str(hold_seconds)],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def landed_count(services: Services) -> int:
    """Batches whose state says landed, from the states' listing metadata. Not the listing markers: a worker
    SIGKILLed between a state's save and its markers leaves its batch's listing one change behind, and a landed
    batch has no next change to bring it up to date."""
    return sum(1 for item in services.control.list(STATES_PREFIX, with_metadata=True)
               if item.metadata.get("state") == "landed")


def test_four_worker_processes_land_300_batches_each_once_even_with_one_killed_mid_way(
        api: httpx.Client, services: Services, settings: Settings, azurite: Azurite,
        blob_service: BlobServiceClient, tmp_path: Path) -> None:
    containers = []
    for index in range(DESTINATIONS):
        container = blob_service.create_container(f"workers-{index}-{settings.control_container[4:16]}")
        extra = {"coalesce": {"max_delay_seconds": 0, "target_file_mb": 1}} if index % 2 else {}
        make_destination(api, azurite, container, dest_id=f"dest-{index}", **extra)
        containers.append(container)
    batch_ids = []
    for number in range(BATCHES):
        records = [{"event": "Order", "ts": 1763629200 + number, "$insert_id": f"n{number}-{i}"} for i in range(5)]
        body = b"".join(orjson.dumps(r) + b"\n" for r in records)
        response = api.post(f"/api/destinations/dest-{number % DESTINATIONS}/batches", params={"type": "events"},
                            content=body, headers={"content-type": "application/x-ndjson"})
        assert response.status_code == 202, response.text
        batch_ids.append(response.json()["batch_id"])
    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    workers = [start_worker(settings, azurite, log, hold_seconds=6) for log in logs]
    try:
        deadline = time.monotonic() + 240
        killed = False
        while landed_count(services) < BATCHES:
            assert time.monotonic() < deadline, f"{landed_count(services)} of {BATCHES} landed; logs in {tmp_path}"
            if not killed and landed_count(services) >= BATCHES // 4:
                workers[0].send_signal(signal.SIGKILL)  # mid-way: its messages in hand reappear after 6 s
                killed = True
            for worker, log in zip(workers[1:], logs[1:], strict=True):
                assert worker.poll() is None, log.read_text(errors="replace")
            time.sleep(0.5)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
    statuses = [api.get(f"/api/batches/{batch_id}").json() for batch_id in batch_ids]
    assert Counter(s["state"] for s in statuses) == {"landed": BATCHES}
    # Every record exactly once in its destination: no batch was exported by two workers.
    seen: Counter[str] = Counter()
    for container in containers:
        for name in data_files(container):
            seen.update(orjson.loads(line)["$insert_id"] for line in read_blob(container, name).splitlines() if line)
    assert len(seen) == BATCHES * 5 and set(seen.values()) == {1}
    in_manifests = Counter(b["batch_id"] for c in containers for m in manifests(c) for b in m.get("batches", []))
    coalesced = {s["batch_id"] for s in statuses if s["run_id"]}
    assert coalesced and all(in_manifests[b] == 1 for b in coalesced)  # each coalesced batch in one run
    worked = [log.read_bytes().decode(errors="replace").count("landed") for log in logs[1:]]
    assert sum(1 for count in worked if count) >= 2, "the work was shared among the workers"
