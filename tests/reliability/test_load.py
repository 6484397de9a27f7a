"""Concurrency and load: several export workers over many batches, many clients posting at once.

Sizes follow RELIABILITY_SCALE (default 1: 200 small batches + 2 of 20,000 records, 50 clients for 5 s).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control import batch_index
from shared.control.batches import STATES_PREFIX, get_state
from shared.services import Services
from shared.settings import Settings
from tests.reliability.fault_helpers import (
    SCALE,
    assert_landed_exactly_once,
    control_names,
    ndjson,
    report,
    scaled,
    settings_env,
)
from tests.shared.export_helpers import make_destination
from tests.support.azurite import REPO_ROOT, Azurite

WORKERS = 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Large batches up to 64 MiB per request, written as ~1 MiB parts so each spans several files. Intake takes
    # every client of these tests at once (up to 50): what they load is staging, not MAX_CONCURRENT_INTAKE's
    # 503 (tests/shared/intake/test_intake_limits.py).
    return settings.model_copy(update={"max_request_bytes": 64 * 1024 * 1024, "part_max_bytes": 1024 * 1024,
                                       "max_concurrent_intake": 64})


def post(client: httpx.Client, dest: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=body,
                       headers={"content-type": "application/x-ndjson", **headers})


def test_four_export_passes_at_once_land_every_batch_once(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, settings: Settings
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="gzip")
    bodies = [(ndjson(list(sample_data.events(10, seed=i, hours=1))), 10) for i in range(scaled(200))]
    large = scaled(20_000)
    bodies += [(ndjson(list(sample_data.events(large, seed=1000 + i, hours=3))), large) for i in range(2)]

    def stage(item: tuple[bytes, int]) -> tuple[str, int]:
        response = post(api, dest, item[0])
        assert response.status_code == 202, response.text
        assert response.json()["records"] == item[1]
        return response.json()["batch_id"], item[1]

    with ThreadPoolExecutor(8) as pool:
        accepted = dict(pool.map(stage, bodies))
    assert len(accepted) == len(bodies)

    started = time.monotonic()
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.reliability.worker_child"], cwd=REPO_ROOT,
                         env={**os.environ, **settings_env(settings)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(WORKERS)
    ]
    summaries = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err.decode()[-3000:]
        summaries.append(orjson.loads(out.splitlines()[-1]))
    elapsed = time.monotonic() - started

    assert sum(s["landed"] for s in summaries) == len(accepted)
    assert sum(s["failed"] + s["retried"] for s in summaries) == 0
    landed_by = Counter(b["batch_id"] for s in summaries for b in s["batches"] if b["outcome"] == "landed")
    assert set(landed_by) == set(accepted) and set(landed_by.values()) == {1}
    for batch_id in accepted:
        final = get_state(services.control, batch_id)
        assert final.state == "landed" and final.total_attempts == 1  # never two workers on one batch
    assert control_names(services, batch_index.OPEN) == []
    counts = assert_landed_exactly_once(fresh_container, accepted)
    report("four_export_passes_at_once", workers=WORKERS, landed_per_worker=[s["landed"] for s in summaries],
           seconds=round(elapsed, 1), **counts)


@dataclass
class Answer:
    status: int
    batch_id: str | None
    records: int
    replayed: bool
    seconds: float
    error: dict[str, Any] | None


def test_intake_under_concurrent_load_loses_nothing(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    sizes = [1, 5, 20, 50, 120]
    bodies = [(ndjson(list(sample_data.events(n, seed=n, hours=2))), n) for n in sizes]
    clients, duration = 50, 5.0 * SCALE
    answers: list[Answer] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client_loop(number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=str(api.base_url), timeout=60) as client:
            while time.monotonic() < deadline:
                body, _ = rng.choice(bodies)
                # One request in ten is sent twice with an Idempotency-Key, as a platform retrying would.
                key = {"Idempotency-Key": uuid.uuid4().hex} if rng.random() < 0.1 else {}
                for _ in range(2 if key else 1):
                    began = time.monotonic()
                    response = post(client, dest, body, **key)
                    data = response.json()
                    answer = Answer(response.status_code, data.get("batch_id"), data.get("records", 0),
                                    response.headers.get("Idempotent-Replayed") == "true",
                                    time.monotonic() - began, data.get("error"))
                    with lock:
                        answers.append(answer)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = Counter(a.status for a in answers)
    unexpected = [a for a in answers if a.status not in (202, 503)]
    assert unexpected == [], unexpected[:5]
    for refused in (a for a in answers if a.status == 503):  # deliberate: control storage overloaded
        assert refused.error is not None and "retry later" in refused.error["message"]
    created = {a.batch_id: a.records for a in answers if a.status == 202 and not a.replayed}
    replays = [a for a in answers if a.status == 202 and a.replayed]
    assert len(created) == sum(1 for a in answers if a.status == 202 and not a.replayed)  # ids are unique
    assert all(created.get(a.batch_id) == a.records for a in replays)  # a replay names its first batch

    states = [item.name[len(STATES_PREFIX):-len(".json")] for item in services.control.list(STATES_PREFIX)]
    assert sorted(states) == sorted(created), "a 202 batch has no state, or a state has no 202"
    assert len(control_names(services, batch_index.OPEN)) == len(created)

    def staged_records(batch_id: str) -> tuple[int, int]:
        state = get_state(services.control, batch_id)
        lines = sum(
            b"".join(services.control.stream(part.blob, *part.byte_range())).count(b"\n") for part in state.partitions
        )
        return state.records, lines

    with ThreadPoolExecutor(16) as pool:
        staged = list(pool.map(staged_records, created))
    assert sum(r for r, _ in staged) == sum(created.values())  # records in 202 answers == records in states
    assert all(r == lines for r, lines in staged)  # == lines in the staged blobs
    latencies = sorted(a.seconds for a in answers)
    p99 = latencies[int(len(latencies) * 0.99)]
    report("intake_under_load", clients=clients, seconds=duration, requests=len(answers),
           statuses=dict(statuses), batches=len(created), replays=len(replays),
           records=sum(created.values()), requests_per_second=round(len(answers) / duration),
           p50_ms=round(statistics.median(latencies) * 1000), p99_ms=round(p99 * 1000))


def test_same_idempotency_key_from_many_clients_at_once_is_one_batch(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    body = ndjson(list(sample_data.events(30, hours=1)))
    barrier = threading.Barrier(20)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(api.base_url), timeout=60) as client:
            barrier.wait()
            return post(client, dest, body, **{"Idempotency-Key": "order-42"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, range(20)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["batch_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in responses) >= 1
    assert len(control_names(services, STATES_PREFIX)) == 1
    report("same_idempotency_key_20_at_once", requests=20, batches=1)
