"""An export pass runs small tasks in a lane of their own besides EXPORT_CONCURRENCY's (`shared.export.lanes`):
many small batches are exported several at once, a large one only ever on one of EXPORT_CONCURRENCY's threads,
and a task is sized from its open markers before anything is claimed. The lanes on their own, then a pass through
the API and Azurite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control import batch_index
from shared.control.batches import now_utc
from shared.export import runner
from shared.export.lanes import LIGHT_TASK_BYTES, LIGHT_TASKS, Task, run_in_lanes, task_bytes
from shared.export.runner import due_batches, run_export_pass
from shared.services import Services, build_services
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite

SMALL, LARGE = 10_000, 4 * LIGHT_TASK_BYTES


class Watch:
    """How many tasks are at work at once, and which thread ran which task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.threads: dict[str, str] = {}
        self.order: list[str] = []

    @contextmanager
    def at_work(self, name: str) -> Iterator[None]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads[name] = threading.current_thread().name
            self.order.append(name)
        try:
            yield
        finally:
            with self.lock:
                self.now -= 1

    def task(self, name: str, staged_bytes: int | None, seconds: float = 0.2) -> Task:
        def run() -> dict[str, str]:
            with self.at_work(name):
                time.sleep(seconds)
            return {name: "landed"}

        return Task("acme", (name,), run, staged_bytes)


def never() -> float:
    return 0.0


def test_small_tasks_run_in_a_lane_of_their_own_besides_the_large_ones() -> None:
    watch = Watch()
    tasks = [watch.task(f"large{i}", LARGE) for i in range(3)] + [watch.task(f"small{i}", SMALL) for i in range(12)]
    outcomes, left = run_in_lanes(tasks, 1, stop_at=1.0, clock=never)
    assert left == [] and outcomes == {t.batch_ids[0]: "landed" for t in tasks}
    assert watch.most == 1 + LIGHT_TASKS  # one large at a time (EXPORT_CONCURRENCY 1), eight small besides
    assert all(watch.threads[f"large{i}"].startswith("export_") for i in range(3))  # never on a light thread
    assert [name for name in watch.order if name.startswith("large")] == ["large0", "large1", "large2"]  # in order


def test_a_task_of_unknown_size_is_a_large_one_and_the_heavy_lane_takes_small_ones_when_it_is_idle() -> None:
    watch = Watch()
    unknown = [watch.task(f"unknown{i}", None) for i in range(3)]
    outcomes, _ = run_in_lanes(unknown, 2, stop_at=1.0, clock=never)
    assert len(outcomes) == 3 and watch.most == 2
    assert all(not name.startswith("export-light") for name in watch.threads.values())
    watch = Watch()
    outcomes, _ = run_in_lanes([watch.task(f"small{i}", SMALL) for i in range(20)], 2, stop_at=1.0, clock=never)
    assert len(outcomes) == 20 and watch.most == 2 + LIGHT_TASKS


def test_a_pass_out_of_time_starts_nothing_more_and_what_it_began_finishes() -> None:
    watch = Watch()
    tasks = [watch.task(f"small{i}", SMALL, seconds=0.3) for i in range(30)]
    outcomes, left = run_in_lanes(tasks, 1, stop_at=time.monotonic() + 0.1)
    assert len(outcomes) == 1 + LIGHT_TASKS and set(outcomes.values()) == {"landed"}
    assert len(left) == 30 - len(outcomes) and not {t.batch_ids[0] for t in left} & set(outcomes)


def test_a_task_is_sized_by_all_its_batches_or_not_at_all() -> None:
    assert task_bytes([100, 200]) == 300
    assert task_bytes([100, None]) is None
    assert Task("d", (), dict, LIGHT_TASK_BYTES - 1).light and not Task("d", (), dict, LIGHT_TASK_BYTES).light
    assert not Task("d", (), dict, None).light


def events(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"event": "e", "ts": 1763629200 + start + i, "pad": "x" * 200} for i in range(count)]


def test_a_pass_exports_small_batches_several_at_once_and_a_large_one_on_its_own_thread(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_destination(api, azurite, fresh_container)
    small = [post_batch(api, "acme", events(5, start=100 * i))["batch_id"] for i in range(10)]
    large = post_batch(api, "acme", events(5_000, start=10_000))["batch_id"]
    sizes = {b.batch_id: b.staged_bytes for b in due_batches(services, _later())}
    assert all(0 < (sizes[b] or LIGHT_TASK_BYTES) < LIGHT_TASK_BYTES for b in small)  # the markers say, at intake
    assert (sizes[large] or 0) >= LIGHT_TASK_BYTES
    watch = Watch()
    export_one = runner.export_one

    def watched(services: Services, batch_id: str, **kwargs: Any) -> str:  # the real export, watched
        with watch.at_work(batch_id):
            time.sleep(0.2)  # long enough for the others to start meanwhile
            return export_one(services, batch_id, **kwargs)

    monkeypatch.setattr(runner, "export_one", watched)
    one_at_a_time = build_services(services.settings.model_copy(update={"export_concurrency": 1}),
                                   secrets=services.secrets)
    summary = run_export_pass(one_at_a_time)
    assert summary.landed == 11 and summary.failed == summary.skipped == 0
    assert watch.most > 1  # EXPORT_CONCURRENCY 1, yet small batches went several at once
    assert watch.threads[large].startswith("export_")
    assert len(jsonl_records(fresh_container)) == 10 * 5 + 5_000  # every record once
    assert batch_index.open_batches(services.control) == []


def test_open_markers_say_what_their_batch_staged_and_a_marker_that_does_not_is_sized_unknown(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    batch_id = post_batch(api, "acme", list(sample_data.events(20)))["batch_id"]
    [marker] = batch_index.open_batches(services.control)
    staged = api.get(f"/api/batches/{batch_id}").json()
    assert marker.staged_bytes is not None and marker.staged_bytes > 0
    assert staged["state"] == "pending"
    # as a marker written before markers carried the size: its metadata without `bytes`
    blob = services.control.container.get_blob_client(marker.marker)
    metadata = dict(blob.get_blob_properties().metadata)
    blob.set_blob_metadata({k: v for k, v in metadata.items() if k != "bytes"})
    [older] = due_batches(services, _later())
    assert older.batch_id == batch_id and older.staged_bytes is None
    assert run_export_pass(services).landed == 1


def _later() -> datetime:
    return now_utc() + timedelta(seconds=5)
