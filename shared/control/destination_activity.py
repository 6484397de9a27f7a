"""What a destination's exports last did: the one document per destination that the status answer
(`shared.control.destination_status`) reads for its last landing, its last error and its landings per hour, so
that it never reads batch states to find them.

  activity/{destination_id}.json   per generation of the destination (a destination deleted and created again
                                   under the same id has a new one): the latest landing, the latest error, and
                                   batches and records landed per UTC hour over the last 48 hours

Written by `note_saved`, which `shared.control.batches` calls after each state save (once for the states a run
saves together). Only two saves change it: the one that landed a batch, and the one that recorded an attempt's
error (a back-off or a failure), told apart by the state itself (`change_of`), whoever saved it. Best effort: the
state is saved and stands, and a write that fails is logged and never fails the export.

Concurrent exports of one destination (threads of a coalesced run, other passes, other instances) cannot lose
a change that matters: within a process, changes waiting for the document are written together by one thread;
between processes, each write is conditional on the ETag read, and a lost race reads again and merges again.
Merging keeps the newer landing and the newer error, whatever order the changes come in, and adds the counts.

A crash between the state save and this write leaves the document behind, never ahead: the latest landing and
the latest error are right again at the destination's next landing or error (the newer one wins); a batch left
out of an hour's count stays out, and that hour leaves the 48-hour window.

**Failing streaks (issue 17).** Each generation also keeps its consecutive failed export runs: the runs (a batch
exported on its own, or a coalesced run, counted once by its run id) that ended failed after its latest landing
(`failing`). A landing newer than them ends the streak and is noted as a recovery (`last_recovery`). A resume
(`Change.reset_at`) starts the count again: AUTO_PAUSE_AFTER is compared with the runs that failed after it
(`failing_runs`, read by `DestinationService.pause_if_failing`), while the streak itself lasts until a landing.
The write that records a run's failure raises its `batch_failed` alert, the one that records a recovery its
`recovered` alert (`shared.control.alerts_outbox`: best effort, the timer raises them again from this document
and the failed markers if a crash lost them).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.control.alerts_outbox import new_alert, raise_best_effort
from shared.control.batch_state import BatchState, Timestamp, iso
from shared.control.store import ControlStore, Document, PreconditionFailed
from shared.logging_setup import log_event

log = logging.getLogger(__name__)

ACTIVITY_PREFIX = "activity/"
HOURS_KEPT = 48
GENERATIONS_KEPT = 4  # a destination re-created several times keeps its latest generations' activity only
WRITE_TRIES = 8  # conditional writes before giving up (each lost race means another writer just succeeded)
_HOUR = "%Y-%m-%dT%H"


class _Model(BaseModel):
    # Unknown keys are ignored rather than refused: a newer instance may add some, and a status answer or an
    # export must not fail over this document.
    model_config = ConfigDict(extra="ignore", frozen=True)


class LandedNote(_Model):
    at: Timestamp
    batch_id: str
    records: int
    run_id: str | None = None


class ErrorNote(_Model):
    """An attempt's error, as the batch state recorded it (plain words; a state never holds a secret)."""

    at: Timestamp
    batch_id: str
    code: str
    message: str
    attempt: int
    will_retry: bool  # the batch backs off and is tried again; false: it failed and waits for a retry
    run_id: str | None = None  # the coalesced run it failed in; None: exported on its own


class FailedRun(_Model):
    """An export run that ended failed: a batch on its own (`run` is its id) or a coalesced run, counted once."""

    run: str
    at: Timestamp
    batch_id: str
    code: str
    message: str


class PauseRecord(_Model):
    """The latest pause that was resumed (the record forgets it then): what the timer raises a `paused` alert
    from if a crash lost it."""

    at: Timestamp
    by: str
    reason: str
    failed_runs: int | None = None
    resumed_at: Timestamp


class Recovery(_Model):
    """A landing that ended a failing streak."""

    at: Timestamp
    batch_id: str
    failed_runs: int  # how long the streak was
    failing_since: Timestamp  # its first failure


class HourCount(_Model):
    batches: int = 0
    records: int = 0


class GenerationActivity(_Model):
    last_landed: LandedNote | None = None
    last_error: ErrorNote | None = None
    landed_by_hour: dict[str, HourCount] = {}  # "YYYY-MM-DDTHH" (UTC) -> what landed in that hour
    seen_at: Timestamp | None = None  # the latest change's time: which generations to keep
    failing: list[FailedRun] = []  # consecutive failed runs since the latest landing, oldest first
    counting_since: Timestamp | None = None  # the latest resume: runs that failed before it no longer pause it
    last_recovery: Recovery | None = None
    last_pause: PauseRecord | None = None


class DestinationActivity(_Model):
    destination_id: str
    generations: dict[str, GenerationActivity] = {}  # by the destination's generation ("" for none)


MAX_FAILING = 100  # failed runs kept in a streak: AUTO_PAUSE_AFTER is at most 100
# Failures that are no export run's: the destination was deleted (DELETE ?force=true fails its batches).
NOT_RUN_FAILURES = frozenset({"destination_deleted"})


@dataclass(frozen=True)
class Change:
    """One landing or one error of a batch, for its destination's generation; or a resume (`reset_at`), which
    ends the generation's failing streak."""

    generation: str
    landed: LandedNote | None = None
    error: ErrorNote | None = None
    reset_at: datetime | None = None
    resumed: PauseRecord | None = None  # with `reset_at`: the pause it ended

    @property
    def at(self) -> datetime:
        if self.reset_at is not None:
            return self.reset_at
        note = self.landed or self.error
        assert note is not None
        return note.at

    @property
    def failed_run(self) -> FailedRun | None:
        """The export run this change says failed: a batch's failure it does not retry, from an export."""
        error = self.error
        if error is None or error.will_retry or error.code in NOT_RUN_FAILURES:
            return None
        return FailedRun(run=error.run_id or error.batch_id, at=error.at, batch_id=error.batch_id, code=error.code,
                         message=error.message)


def hour_key(moment: datetime) -> str:
    """The UTC hour a landing is counted in: "YYYY-MM-DDTHH"."""
    return moment.astimezone(UTC).strftime(_HOUR)


def activity_blob(destination_id: str) -> str:
    return f"{ACTIVITY_PREFIX}{destination_id}.json"


def generation_key(generation: str | None) -> str:
    return generation or ""


def change_of(state: BatchState) -> Change | None:
    """The change a just-saved state brings, if any: the save that landed it (`land` stamps `finished_at` and
    `updated_at` with one moment), or the one that recorded an attempt's error (`back_off`, `fail` and the other
    failing transitions stamp the error and `updated_at` with one moment). Any other save (start, parts,
    retention, retry) keeps an older moment in both, so it brings nothing, and neither does saving again."""
    key = generation_key(state.destination_generation)
    if state.state == "landed" and state.finished_at is not None and state.finished_at == state.updated_at:
        return Change(key, landed=LandedNote(at=state.finished_at, batch_id=state.batch_id, records=state.records,
                                             run_id=state.run_id))
    error = state.last_error
    if error is not None and error.at == state.updated_at and state.state in {"pending", "failed"}:
        return Change(key, error=ErrorNote(at=error.at, batch_id=state.batch_id, code=error.code,
                                           message=error.message, attempt=error.attempt,
                                           will_retry=state.state == "pending", run_id=state.run_id))
    return None


def merged(activity: DestinationActivity, changes: Sequence[Change], now: datetime) -> DestinationActivity:
    """The document with `changes` applied: the newer landing and error kept, landings counted by hour, hours
    older than HOURS_KEPT and all but the latest GENERATIONS_KEPT generations dropped."""
    generations = dict(activity.generations)
    for change in changes:
        current = generations.get(change.generation, GenerationActivity())
        generations[change.generation] = _applied(current, change)
    oldest_hour = hour_key(now - timedelta(hours=HOURS_KEPT))
    kept = sorted(generations.items(), key=lambda item: item[1].seen_at or datetime.min.replace(tzinfo=UTC),
                  reverse=True)[:GENERATIONS_KEPT]
    return activity.model_copy(update={"generations": {
        key: entry.model_copy(update={"landed_by_hour": {
            hour: count for hour, count in sorted(entry.landed_by_hour.items()) if hour >= oldest_hour}})
        for key, entry in kept}})


def _applied(entry: GenerationActivity, change: Change) -> GenerationActivity:
    update: dict[str, object] = {"seen_at": max(entry.seen_at or change.at, change.at)}
    if change.landed is not None:
        landed = change.landed
        if entry.last_landed is None or landed.at > entry.last_landed.at:
            update["last_landed"] = landed
        hour = hour_key(landed.at)
        count = entry.landed_by_hour.get(hour, HourCount())
        update["landed_by_hour"] = {**entry.landed_by_hour, hour: HourCount(
            batches=count.batches + 1, records=count.records + landed.records)}
        update.update(_streak_ended(entry, landed))
    if change.error is not None and (entry.last_error is None or change.error.at > entry.last_error.at):
        update["last_error"] = change.error
    failed = change.failed_run
    if failed is not None and _counts(entry, failed):
        update["failing"] = sorted([*entry.failing, failed], key=lambda f: (f.at, f.run))[-MAX_FAILING:]
    if change.reset_at is not None:
        update["counting_since"] = max(entry.counting_since or change.reset_at, change.reset_at)
    if change.resumed is not None and (entry.last_pause is None or change.resumed.at > entry.last_pause.at):
        update["last_pause"] = change.resumed
    return entry.model_copy(update=update)


def _streak_ended(entry: GenerationActivity, landed: LandedNote) -> dict[str, object]:
    """A landing ends the runs that failed before it: a recovery, when there were some (and it is the newest)."""
    before = [f for f in entry.failing if f.at <= landed.at]
    if not before:
        return {}
    update: dict[str, object] = {"failing": [f for f in entry.failing if f.at > landed.at]}
    if entry.last_recovery is None or landed.at > entry.last_recovery.at:
        update["last_recovery"] = Recovery(at=landed.at, batch_id=landed.batch_id, failed_runs=len(before),
                                           failing_since=before[0].at)
    return update


def _counts(entry: GenerationActivity, failed: FailedRun) -> bool:
    """Whether a failed run extends the streak: after the latest landing, and not counted yet (the members of a
    coalesced run fail together, one run)."""
    if entry.last_landed is not None and failed.at <= entry.last_landed.at:
        return False
    return all(f.run != failed.run for f in entry.failing)


def read_activity(control: ControlStore, destination_id: str) -> DestinationActivity:
    doc = control.get(activity_blob(destination_id))
    return _parsed(doc, destination_id)


def _parsed(doc: Document | None, destination_id: str) -> DestinationActivity:
    if doc is None:
        return DestinationActivity(destination_id=destination_id)
    return DestinationActivity.model_validate(doc.data)


# --- Writing: one writer per destination in a process, conditional writes between processes ------------------


@dataclass
class _Writer:
    """A destination's changes waiting for its document, and the document as this process last wrote or read it
    (its ETag saves a read when no other process wrote since)."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `waiting`
    writing: threading.Lock = field(default_factory=threading.Lock)  # one write at a time
    waiting: list[Change] = field(default_factory=list)
    known: Document | None = None


_writers: weakref.WeakKeyDictionary[ControlStore, dict[str, _Writer]] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer(control: ControlStore, destination_id: str) -> _Writer:
    with _writers_lock:
        return _writers.setdefault(control, {}).setdefault(destination_id, _Writer())


def note_saved(control: ControlStore, states: Sequence[BatchState]) -> None:
    """After states were saved: record their landings and errors in their destinations' activity, one write a
    destination (a run's members land together). Never raises."""
    by_destination: dict[str, list[Change]] = {}
    for state in states:
        change = change_of(state)
        if change is not None:
            by_destination.setdefault(state.destination_id, []).append(change)
    for destination_id, changes in by_destination.items():
        try:
            record_changes(control, destination_id, changes, datetime.now(UTC))
        except Exception as exc:  # the states are saved and stand; the status is behind until the next change
            first = next(state.batch_id for state in states if state.destination_id == destination_id)
            log_event(log, "destination activity not recorded", logging.WARNING, destination_id=destination_id,
                      batch_id=first, batches=len(changes), error=type(exc).__name__)


def record_changes(control: ControlStore, destination_id: str, changes: Sequence[Change], now: datetime) -> bool:
    """Apply `changes` to the destination's activity. Changes other threads of this process are waiting to
    write are written in the same write; a thread that finds its changes written by another returns at once.
    Returns False if the document could not be written after WRITE_TRIES lost races."""
    writer = _writer(control, destination_id)
    with writer.lock:
        writer.waiting.extend(changes)
    with writer.writing:
        with writer.lock:
            mine, writer.waiting = writer.waiting, []
        if not mine:
            return True  # written by the thread before us, together with its own
        return _write(control, destination_id, writer, mine, now)


def _write(control: ControlStore, destination_id: str, writer: _Writer, changes: list[Change],
           now: datetime) -> bool:
    name = activity_blob(destination_id)
    try:
        doc = writer.known or control.get(name)  # what this process wrote last: stale, its write fails and we read
        for attempt in range(WRITE_TRIES):
            body = merged(_parsed(doc, destination_id), changes, now).model_dump(mode="json")
            try:
                etag = (control.put(name, body, create_only=True) if doc is None
                        else control.put(name, body, etag=doc.etag))
            except PreconditionFailed:  # another process wrote it since: read it again and merge again
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                doc = control.get(name)
                continue
            writer.known = Document(body, etag)
            _raise_alerts(control, destination_id, _parsed(doc, destination_id), body, changes, now)
            return True
    except Exception:
        writer.known = None
        raise
    writer.known = None
    log_event(log, "destination activity not recorded: too many concurrent writers", logging.WARNING,
              destination_id=destination_id, changes=len(changes), tries=WRITE_TRIES)
    return False


def _raise_alerts(control: ControlStore, destination_id: str, before: DestinationActivity, written: dict[str, Any],
                  changes: Sequence[Change], now: datetime) -> None:
    """After a write: a `batch_failed` alert for a run's failure it recorded, a `recovered` one for a recovery it
    noted (best effort; one per destination and day: the outbox refuses the rest)."""
    after = DestinationActivity.model_validate(written)
    failures = [c.failed_run for c in changes if c.failed_run is not None]
    for failed in failures[:1]:  # the day's first is the one alert: a second would be refused anyway
        raise_best_effort(control, new_alert("batch_failed", destination_id, failed.at, {
            "batch_id": failed.batch_id, "run": failed.run, "error_code": failed.code, "message": failed.message}, now))
    for key, entry in after.generations.items():
        recovery = entry.last_recovery
        previous = before.generations.get(key)
        if recovery is not None and (previous is None or previous.last_recovery != recovery):
            raise_best_effort(control, new_alert("recovered", destination_id, recovery.at,
                                                 recovery_details(recovery), now))


def recovery_details(recovery: Recovery) -> dict[str, Any]:
    return {"batch_id": recovery.batch_id, "failed_runs": recovery.failed_runs,
            "failing_since": iso(recovery.failing_since)}


def reset_streak(control: ControlStore, destination_id: str, generation: str | None, moment: datetime,
                 resumed: PauseRecord | None = None) -> bool:
    """A resume: runs that failed before `moment` no longer count towards a pause; `resumed` is the pause it ends
    (kept as `last_pause`)."""
    change = Change(generation_key(generation), reset_at=moment, resumed=resumed)
    return record_changes(control, destination_id, [change], moment)


def failing_runs(activity: DestinationActivity, generation: str | None) -> list[FailedRun]:
    """The generation's consecutive failed export runs since its latest resume, oldest first: what
    AUTO_PAUSE_AFTER is compared with."""
    entry = activity.generations.get(generation_key(generation))
    if entry is None:
        return []
    return [f for f in entry.failing if entry.counting_since is None or f.at > entry.counting_since]
