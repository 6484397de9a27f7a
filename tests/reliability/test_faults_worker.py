"""The worker process is killed mid-upload (SIGKILL: no cleanup, no outcome recorded, the lease left to
expire): no other worker touches the batch while the lease holds, and a later pass finishes it exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export.runner import run_export_pass
from shared.services import Services
from shared.settings import Settings
from tests.reliability.fault_helpers import assert_landed_exactly_once, report, scaled, settings_env, state
from tests.shared.export_helpers import data_files, make_destination, manifests, post_batch
from tests.support.azurite import REPO_ROOT, Azurite


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The shortest lease Azure allows, so the test waits ~15 s for the dead worker's lease to run out.
    return settings.model_copy(update={"part_max_bytes": 20_000, "lease_seconds": 15})


def spawn_worker(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.worker_child", *args],
        cwd=REPO_ROOT, env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def wait_for(path: Path, worker: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited early: {worker.communicate()[1].decode()[-2000:]}")
        if time.monotonic() > deadline:
            worker.kill()
            raise AssertionError("the worker never reached the commit it should stall at")
        time.sleep(0.05)


def test_worker_killed_mid_upload_is_finished_by_a_later_pass(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, settings: Settings,
    tmp_path: Path,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="gzip")
    records = list(sample_data.events(scaled(600), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    marker = tmp_path / "stalled"

    worker = spawn_worker(settings, "--stall-at-commit", "3", "--marker", str(marker))
    try:
        wait_for(marker, worker)
        stalled_on = marker.read_text(encoding="utf-8")
        running = state(services, bid)
        assert running["state"] == "running" and stalled_on in running["written_blobs"]
        # Two commits came before the stalled one; the other partition's writer may go on meanwhile (small
        # partitions are written at once), but no manifest is written while a file is missing.
        assert len(data_files(fresh_container)) >= 2 and manifests(fresh_container) == []
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = time.monotonic()

    # The dead worker's lease still holds: another pass must not export the batch now.
    during_lease = run_export_pass(services)
    assert (during_lease.skipped, during_lease.landed) == (1, 0)
    assert state(services, bid)["state"] == "running"

    while (summary := run_export_pass(services)).landed == 0:
        assert time.monotonic() - killed_at < settings.lease_seconds + 15, "the lease never expired"
        assert summary.failed == 0
        time.sleep(0.5)
    taken_over_after = time.monotonic() - killed_at

    final = state(services, bid)
    assert final["state"] == "landed" and final["total_attempts"] == 2
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    assert counts["data_files"] > 3
    report("worker_killed_mid_upload", stalled_on_commit=3, taken_over_after_seconds=round(taken_over_after, 1),
           attempts=final["total_attempts"], **counts)


def test_worker_killed_mid_run_is_redone_with_the_same_members_and_names(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, settings: Settings,
    tmp_path: Path,
) -> None:
    """A coalesced run (issue 13): the worker dies after two of its files; the next pass (once the run lease
    has run out) redoes the same run, and the container holds exactly that run's files."""
    dest = make_destination(api, azurite, fresh_container, compression="gzip",
                            coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    accepted = {}
    for n in range(30):
        records = list(sample_data.events(scaled(40), seed=n, hours=2))
        accepted[post_batch(api, dest, records)["batch_id"]] = len(records)
    marker = tmp_path / "stalled"

    worker = spawn_worker(settings, "--stall-at-commit", "3", "--marker", str(marker))
    try:
        wait_for(marker, worker)
        running = state(services, next(iter(accepted)))
        run_id = running["run_id"]
        assert running["state"] == "running" and run_id and marker.read_text(encoding="utf-8").find(run_id) > 0
        assert manifests(fresh_container) == []
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = time.monotonic()

    during_lease = run_export_pass(services)  # the dead worker's run lease still holds
    assert during_lease.landed == 0 and state(services, next(iter(accepted)))["state"] == "running"
    while (summary := run_export_pass(services)).landed == 0:
        assert time.monotonic() - killed_at < settings.lease_seconds + 15, "the run lease never expired"
        assert summary.failed == 0
        time.sleep(0.5)
    assert summary.landed == len(accepted)

    counts = assert_landed_exactly_once(fresh_container, accepted)
    [manifest] = manifests(fresh_container)
    assert manifest["run_id"] == run_id and len(manifest["batches"]) == len(accepted)
    assert all(state(services, b)["run_id"] == run_id and state(services, b)["total_attempts"] == 2
               for b in list(accepted)[:5])
    report("worker_killed_mid_run", stalled_on_commit=3, **counts)
