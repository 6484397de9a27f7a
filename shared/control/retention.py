"""Retention: control storage does not keep customers' records and batch states forever.

Run by the timer after each export pass (`sweep`), in bounded work: at most RETENTION_BATCHES_PER_RUN
batches per queue per run, each queue read from its oldest marker (`shared.control.batch_index`) and left at the
first one not yet due, so a run costs one listing per queue plus the batches it acts on.

- A landed batch's staged records are deleted STAGED_RETENTION_HOURS after it landed (kept that long so a
  replay can use them; 0 deletes them at landing, `delete_staged_at_landing`).
- A failed batch keeps its staged records for a retry, at most FAILED_RETENTION_DAYS; then they are deleted
  and its state says so (a note, `staged_deleted_at`, and a retry is refused with words for why).
- A state is deleted STATE_RETENTION_DAYS after the batch landed, or after a failed batch's records went, with
  its index markers.
- A coalesced run's document is deleted the longer of the two after the run landed or failed
  (`shared.control.runs`), unless it was redone since.

Each step re-reads the state and changes it with an ETag, so a retry that comes first wins; a step that
fails leaves its marker for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.control import batch_index, runs, transitions
from shared.control.batch_index import RetentionQueue
from shared.control.batch_state import BatchState
from shared.control.batches import (
    STATES_PREFIX,
    failed_marker,
    now_utc,
    save_state,
    staged_blobs,
    state_blob,
)
from shared.control.store import ControlStore, PreconditionFailed
from shared.logging_setup import log_event
from shared.settings import Settings

log = logging.getLogger(__name__)

# About 6 storage calls per batch: 100 per queue keeps a run under about 2,000 calls (tens of seconds against
# Azure), and clears 28,800 batches a day per queue on the default 5-minute schedule.
RETENTION_BATCHES_PER_RUN = 100
# States indexed per run while the index catches up with states written before it (3 writes each).
BACKFILL_STATES_PER_RUN = 500


@dataclass
class RetentionSummary:
    staged_deleted: int = 0  # landed batches whose staged records went
    failed_expired: int = 0  # failed batches whose staged records went after FAILED_RETENTION_DAYS
    states_deleted: int = 0
    runs_deleted: int = 0  # coalesced runs' documents
    indexed: int = 0  # older states added to the index
    index_complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def delete_staged_records(control: ControlStore, batch_id: str) -> None:
    control.delete_all(staged_blobs(control, batch_id))


def delete_staged_at_landing(settings: Settings, state: BatchState, save: Callable[[BatchState], None],
                             control: ControlStore) -> None:
    """With STAGED_RETENTION_HOURS=0, the records of a batch just landed go at once (under the caller's lease)."""
    if settings.staged_retention_hours > 0 or state.state != "landed" or state.staged_deleted_at is not None:
        return
    try:
        save(transitions.staged_records_deleted(state, now_utc()))
        delete_staged_records(control, state.batch_id)
    except Exception as exc:  # the batch has landed; the next sweep deletes what is left (its marker is queued)
        log_event(log, "staged records not deleted at landing", logging.WARNING, batch_id=state.batch_id,
                  error=type(exc).__name__)


def sweep(control: ControlStore, settings: Settings, *, moment: datetime | None = None,
          limit: int = RETENTION_BATCHES_PER_RUN) -> RetentionSummary:
    """One bounded run of retention (and of indexing older states); returns what it did."""
    now = moment or now_utc()
    summary = RetentionSummary()
    summary.indexed, summary.index_complete = batch_index.backfill(control, STATES_PREFIX,
                                                                   max_states=BACKFILL_STATES_PER_RUN)
    ages: dict[RetentionQueue, timedelta] = {
        "staged": timedelta(hours=settings.staged_retention_hours),
        "failed": timedelta(days=settings.failed_retention_days),
        "state": timedelta(days=settings.state_retention_days),
        "runs": timedelta(days=max(settings.state_retention_days, settings.failed_retention_days)),
    }
    for queue, age in ages.items():
        items, _ = control.list_page(batch_index.retention_prefix(queue), page_size=limit, continuation=None)
        for item in items:
            started, batch_id = batch_index.parse_retention_marker(item.name)
            if started + age > now:
                break  # the queue is in clock order: the rest are not due either
            try:
                acted = _STEPS[queue](control, batch_id, started, now, settings)
            except PreconditionFailed:
                continue  # the state changed under us (a retry): the next run looks again
            control.delete(item.name)
            if acted:
                setattr(summary, _COUNTED[queue], getattr(summary, _COUNTED[queue]) + 1)
    if summary.staged_deleted or summary.failed_expired or summary.states_deleted or summary.runs_deleted \
            or summary.indexed:
        log_event(log, "retention sweep", **summary.to_json())
    return summary


def _read(control: ControlStore, batch_id: str) -> tuple[BatchState, str] | None:
    doc = control.get(state_blob(batch_id))
    return None if doc is None else (BatchState.from_json(doc.data), doc.etag)


def _landed_staged(control: ControlStore, batch_id: str, started: datetime, now: datetime,
                   settings: Settings) -> bool:
    found = _read(control, batch_id)
    if found is None or found[0].state != "landed":
        return False
    state, etag = found
    if state.staged_deleted_at is None:
        save_state(control, transitions.staged_records_deleted(state, now), etag=etag, previous=state.state)
        log_event(log, "staged records deleted after landing", batch_id=batch_id,
                  destination_id=state.destination_id)
    delete_staged_records(control, batch_id)
    control.put_bytes(batch_index.retention_marker("state", started, batch_id), b"")
    return state.staged_deleted_at is None


def _failed_staged(control: ControlStore, batch_id: str, started: datetime, now: datetime,
                   settings: Settings) -> bool:
    found = _read(control, batch_id)
    if found is None:
        return False
    state, etag = found
    # Retried since (pending, running, landed, or failed again later: a newer marker stands for that failure).
    if state.state != "failed" or state.finished_at is None or state.finished_at.replace(microsecond=0) > started:
        return False
    if state.staged_deleted_at is None:
        expired = transitions.staged_records_deleted(state, now, after_days=settings.failed_retention_days)
        save_state(control, expired, etag=etag, previous=state.state)
    delete_staged_records(control, batch_id)
    control.delete(failed_marker(state.destination_id, batch_id))  # nothing left to retry
    control.put_bytes(batch_index.retention_marker("state", now, batch_id), b"")
    log_event(log, "staged records of a failed batch deleted", logging.WARNING, batch_id=batch_id,
              destination_id=state.destination_id, failed_days=settings.failed_retention_days)
    return True


def _state(control: ControlStore, batch_id: str, started: datetime, now: datetime, settings: Settings) -> bool:
    found = _read(control, batch_id)
    if found is None or not found[0].finished or found[0].staged_deleted_at is None:
        return False
    state, _ = found
    # Its records and markers in one request, then the state: a step that fails part way is done again.
    control.delete_all([*staged_blobs(control, batch_id), *batch_index.every_marker(state),
                        failed_marker(state.destination_id, batch_id)])
    control.delete(state_blob(batch_id))
    log_event(log, "batch state deleted", batch_id=batch_id, destination_id=state.destination_id,
              state=state.state)
    return True


def _run_document(control: ControlStore, run_id: str, started: datetime, now: datetime, settings: Settings) -> bool:
    found = runs.get_run(control, run_id)
    if found is None:
        return False
    run, _ = found
    if run.state == "open" or run.updated_at.replace(microsecond=0) > started:
        return False  # redone since (a member retried): its later outcome queued it again
    control.delete(runs.run_blob(run_id))
    log_event(log, "run document deleted", run_id=run_id, destination_id=run.destination_id, state=run.state)
    return True


_STEPS: dict[RetentionQueue, Callable[[ControlStore, str, datetime, datetime, Settings], bool]] = {
    "staged": _landed_staged, "failed": _failed_staged, "state": _state, "runs": _run_document,
}
_COUNTED: dict[RetentionQueue, str] = {"staged": "staged_deleted", "failed": "failed_expired",
                                       "state": "states_deleted", "runs": "runs_deleted"}
