"""A destination's batches that have not landed, for DELETE /api/destinations/{id}: count them, or fail them.

Found through the open and failed markers (`shared.control.batch_index`, `shared.control.batches`): pending and
running batches have an open marker naming their destination, retryable failed ones a failed marker under it.
Landed batches do not count; neither does an intake that has not committed (a staging marker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.control import batch_index, transitions
from shared.control.batch_state import BatchState
from shared.control.batches import FAILED_PREFIX, failed_marker, save_state, state_blob
from shared.control.retention import delete_staged_records
from shared.control.store import ControlStore, LeaseHeld, PreconditionFailed
from shared.logging_setup import log_event

log = logging.getLogger(__name__)


def not_landed(control: ControlStore, destination_id: str) -> list[str]:
    """Ids of the destination's batches still to export (pending, running) or waiting for a retry (failed)."""
    ids = [marker.batch_id for marker in batch_index.open_batches(control, destination_id=destination_id)
           if not marker.staging]
    ids += [item.name.rsplit("/", 1)[1] for item in control.list(f"{FAILED_PREFIX}{destination_id}/")]
    return sorted(set(ids))


@dataclass(frozen=True)
class Abandoned:
    failed: int  # failed with the reason "destination deleted", their staged records deleted
    running: list[str]  # being exported right now: their workers record the outcome


def fail_for_deleted_destination(control: ControlStore, destination_id: str, batch_ids: list[str],
                                 moment: datetime) -> Abandoned:
    """Fail each batch not landed with the reason "destination deleted" and delete its staged records.

    A batch being exported holds its lease and is left to its worker (which then finds the destination gone,
    or one created again later that is not its own). Each change is conditional on the state read.
    """
    failed, running = 0, []
    for batch_id in batch_ids:
        doc = control.get(state_blob(batch_id))
        if doc is None:
            continue  # deleted meanwhile
        state = BatchState.from_json(doc.data)
        if state.destination_id != destination_id or state.state == "landed":
            continue
        if state.state == "running":
            running.append(batch_id)
            continue
        try:
            save_state(control, transitions.fail_for_deleted_destination(state, moment), etag=doc.etag,
                       previous=state.state)
        except (PreconditionFailed, LeaseHeld):
            running.append(batch_id)  # a worker took it just now
            continue
        delete_staged_records(control, batch_id)
        control.delete(failed_marker(destination_id, batch_id))
        failed += 1
        log_event(log, "batch failed: destination deleted", batch_id=batch_id, destination_id=destination_id,
                  from_state=state.state)
    return Abandoned(failed=failed, running=running)
