"""A batch whose export kills the worker every time ends failed, with the reason (issue 11, item 4).

The worker process is SIGKILLed mid-export (as out of memory or a native crash would end it): no outcome is
recorded and the batch stays running. Each later pass takes it over as a new attempt; once the attempts
reach MAX_ATTEMPTS, the next pass fails it instead of crashing another worker, and says why.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobLeaseClient, ContainerClient

from scripts import sample_data
from shared.control import batches
from shared.export.runner import run_export_pass
from shared.services import Services
from shared.settings import Settings
from tests.reliability.fault_helpers import report, scaled, state
from tests.reliability.test_faults_worker import spawn_worker, wait_for
from tests.shared.export_helpers import is_open, make_destination, post_batch
from tests.support.azurite import Azurite

MAX_ATTEMPTS = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"part_max_bytes": 20_000, "lease_seconds": 15, "max_attempts": MAX_ATTEMPTS})


def crash_a_worker_mid_export(services: Services, settings: Settings, batch_id: str, marker: Path) -> None:
    """A worker takes the batch and dies before its first commit; its lease is then broken, as its expiry
    would free it 15 s later (the test does not wait that long)."""
    worker = spawn_worker(settings, "--stall-at-commit", "1", "--marker", str(marker))
    try:
        wait_for(marker, worker)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    marker.unlink()
    blob = services.control.container.get_blob_client(batches.state_blob(batch_id))
    BlobLeaseClient(blob).break_lease(lease_break_period=0)


def test_a_batch_that_crashes_every_worker_fails_after_max_attempts_with_the_reason(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, settings: Settings,
    tmp_path: Path,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    bid = post_batch(api, dest, list(sample_data.events(scaled(300), hours=1)))["batch_id"]

    for crash in range(1, MAX_ATTEMPTS + 1):
        crash_a_worker_mid_export(services, settings, bid, tmp_path / f"stalled-{crash}")
        died = state(services, bid)
        assert (died["state"], died["attempts"]) == ("running", crash)

    summary = run_export_pass(services)  # would take it over as attempt 3, and crash a third worker
    assert (summary.failed, summary.landed) == (1, 0), summary.to_json()
    failed = state(services, bid)
    assert failed["state"] == "failed" and failed["attempts"] == MAX_ATTEMPTS
    assert failed["last_error"]["code"] == "worker_crashed"
    assert f"the export crashed the worker {MAX_ATTEMPTS} times" in failed["last_error"]["message"]
    assert failed["crashes"] == MAX_ATTEMPTS
    control = services.control.container
    assert not is_open(services.control, bid)  # no pass takes it again
    assert control.get_blob_client(batches.failed_marker(dest, bid)).exists()
    assert run_export_pass(services).to_json()["batches"] == []

    # A retry (after the cause is fixed) gives it a fresh budget, and a healthy worker lands it.
    retried = api.post(f"/api/batches/{bid}/retry")
    assert retried.status_code == 200, retried.text
    assert run_export_pass(services).landed == 1
    landed = state(services, bid)
    assert landed["state"] == "landed" and landed["total_attempts"] == MAX_ATTEMPTS + 1 and "crashes" not in landed
    report("poison_batch_crashes_every_worker", crashes=MAX_ATTEMPTS, state_after_crashes="failed",
           total_attempts=landed["total_attempts"])
