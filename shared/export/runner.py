"""The export pass (timer trigger and run-now): claim due batches under leases, export, record outcomes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from shared import telemetry
from shared.control import batch_index, transitions
from shared.control.batch_state import BatchState, iso
from shared.control.batches import (
    STAGING_GRACE,
    failed_marker,
    migrate_due_markers,
    now_utc,
    save_state,
    settle_finished,
    settle_staging,
    state_blob,
)
from shared.control.leases import BatchLease, LeaseLost
from shared.control.retention import delete_staged_at_landing
from shared.control.store import ControlStore
from shared.destinations.access import with_destination
from shared.destinations.failures import describe_failure
from shared.destinations.record import DestinationRecord
from shared.errors import AppError, DestinationProblem, NotFound
from shared.export.backoff import backoff_delay
from shared.export.batch_writer import (
    ExportPlan,
    OutputPartition,
    build_manifest,
    delete_stale,
    output_partitions,
    write_manifest,
    write_run,
)
from shared.export.block_upload import new_attempt_tag
from shared.export.lanes import Task, run_in_lanes, task_bytes
from shared.export.pass_records import PassRecords
from shared.export.runs import ON_ITS_OWN, export_destination_runs
from shared.export.staged_reads import Read, staged_reader
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)


@dataclass
class PassSummary:
    landed: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    duration_seconds: float = 0.0
    batches: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hooks:
    """Fault-injection points for tests (a crash between parts, a slow upload)."""

    before_commit: Callable[[str], None] | None = None


@dataclass
class _Held:
    """A batch's latest state while its worker holds the lease: each transition's result is saved under it."""

    control: ControlStore
    lease: BatchLease
    state: BatchState

    def save(self, state: BatchState) -> None:
        previous = self.state.state
        self.state = state  # kept even if the save fails: the failure path records from here
        save_state(self.control, state, lease=self.lease.id, previous=previous)


class Due(NamedTuple):
    """A batch an export pass is to export. `staged_bytes` and `record_type`: as its open marker says (None: not
    known; the batch is exported as a large one would be, `shared.export.lanes`, and its destination's runs of
    every type are looked at)."""

    batch_id: str
    destination_id: str
    staged_bytes: int | None = None
    record_type: str | None = None


def due_batches(services: Services, moment: datetime) -> list[Due]:
    """The batches whose due time has come, oldest due first, from the open markers
    (`shared.control.batch_index`). A staging marker older than STAGING_GRACE is settled on the way (its intake
    died: committed, it is due; if not, garbage)."""
    control = services.control
    migrate_due_markers(control, moment)  # markers written before the open markers carried due_at
    batch_index.migrate_open_markers(control)  # and before they went in their destination's folder
    due: list[tuple[float, Due]] = []
    seen: dict[str, int] = {}  # every open batch, per destination: the pending gauge, at no extra request
    for marker in batch_index.open_batches(control):
        if marker.staging:
            if marker.created is None or moment - marker.created < STAGING_GRACE:
                continue  # its intake is still at work
            if settle_staging(control, marker, moment) is None:
                continue
        seen[marker.destination_id] = seen.get(marker.destination_id, 0) + 1
        if marker.due_at <= moment.timestamp():
            due.append((marker.due_at, Due(marker.batch_id, marker.destination_id, marker.staged_bytes,
                                           marker.record_type)))
    telemetry.pending_seen(seen)
    return [batch for _, batch in sorted(due)]


def run_export_pass(
    services: Services,
    *,
    budget_seconds: float | None = None,
    hooks: Hooks | None = None,
    clock: Callable[[], datetime] = now_utc,
    due: Sequence[tuple[str, str] | Due] | None = None,
    records: PassRecords | None = None,
) -> PassSummary:
    """Export every due batch until the time budget is nearly spent; return what happened. `due`: the
    (batch id, destination id) to export instead of every due batch (a queue message's unit); `records`: the
    destination records its caller read already (a queue message's).

    Tasks run at once in two lanes (`shared.export.lanes`): a batch exported on its own under its lease, or a
    destination whose batches are coalesced into runs (`shared.export.runs`, one task per destination), so
    that one task's round trips to control storage and the destination overlap another's work: up to
    EXPORT_CONCURRENCY of any size, and more small ones besides.
    """
    started = time.monotonic()
    budget = budget_seconds if budget_seconds is not None else services.settings.pass_time_budget_seconds
    summary = PassSummary()
    due = due_batches(services, clock()) if due is None else [Due(*batch) for batch in due]
    log_event(log, "export pass started", due=len(due))
    records = records or PassRecords(services)
    tasks = _tasks(services, due, hooks or Hooks(), clock, records)
    # Stop taking new work with a margin left for what is in hand to finish (lease + commit).
    outcomes, left = run_in_lanes(tasks, services.settings.export_concurrency, stop_at=started + budget * 0.8)
    if left:
        summary.skipped += sum(len(t.batch_ids) for t in left)
        log_event(log, "export pass stopping: time budget nearly spent", left=summary.skipped)
    in_runs = sorted({t.destination_id for t in tasks if any(outcomes.get(b) == IN_RUN for b in t.batch_ids)})
    for destination_id in in_runs:  # batches of an open run whose destination stopped coalescing
        ids = [b.batch_id for b in due if b.destination_id == destination_id]
        outcomes.update(_runs_task(services, destination_id, ids, hooks or Hooks(), clock, records).run())
    for batch_id in [b for b, outcome in outcomes.items() if outcome == ON_ITS_OWN]:
        # begun on its own before its destination coalesced: finished the same way
        outcomes[batch_id] = _export_or_skip(services, batch_id, hooks or Hooks(), clock, records)
    for batch in due:
        if batch.batch_id in outcomes:
            outcome = outcomes[batch.batch_id] if outcomes[batch.batch_id] != IN_RUN else "skipped"
            setattr(summary, outcome, getattr(summary, outcome) + 1)
            summary.batches.append({"batch_id": batch.batch_id, "outcome": outcome})
    pause_failing({b.destination_id for b in due if outcomes.get(b.batch_id) == "failed"}, services)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    log_event(log, "export pass finished", **{k: v for k, v in summary.to_json().items() if k != "batches"})
    return summary


def pause_failing(destination_ids: Iterable[str], services: Services) -> None:
    """After failures were saved: pause each destination whose latest AUTO_PAUSE_AFTER export runs all failed
    (issue 17). Never raises: a pause missed here is made by the timer (shared.alerts.conditions)."""
    for destination_id in sorted(destination_ids):
        try:
            services.destinations.pause_if_failing(destination_id)
        except Exception as exc:
            log_event(log, "auto-pause not checked; the timer checks it", logging.WARNING,
                      destination_id=destination_id, error=type(exc).__name__)


IN_RUN = "in_run"  # export_one's answer for a batch that belongs to a coalesced run


def _tasks(services: Services, due: list[Due], hooks: Hooks, clock: Callable[[], datetime],
           records: PassRecords) -> list[Task]:
    """Batches of destinations that coalesce become one task per destination; the others one task each. A paused
    destination's batches are skipped: they wait for its resume, which sends their messages again (issue 17)."""
    coalescing: dict[str, list[Due]] = {}
    tasks: list[Task] = []
    found = {destination_id: _record_of(records, destination_id) for destination_id in {b.destination_id for b in due}}
    paused = {d for d, record in found.items() if record is not None and record.paused is not None}
    for destination_id in sorted(paused):
        ids = tuple(b.batch_id for b in due if b.destination_id == destination_id)
        tasks.append(Task(destination_id, ids, _skipped(ids), staged_bytes=0))
    for batch in due:
        record = found[batch.destination_id]
        if batch.destination_id in paused:
            continue
        if record is not None and record.coalesce is not None:
            coalescing.setdefault(batch.destination_id, []).append(batch)
        else:
            tasks.append(Task(batch.destination_id, (batch.batch_id,),
                              _single(services, batch.batch_id, hooks, clock, records), batch.staged_bytes))
    tasks.extend(_runs_task(services, destination_id, [b.batch_id for b in batches], hooks, clock, records,
                            staged_bytes=task_bytes(b.staged_bytes for b in batches),
                            record_types=_types_of(batches))
                 for destination_id, batches in coalescing.items())
    return tasks


def _types_of(batches: Sequence[Due]) -> frozenset[str] | None:
    """The record types of a destination's due batches; None if a marker did not say (every type is looked at)."""
    types = {b.record_type for b in batches}
    return None if None in types else frozenset(str(t) for t in types)


def _skipped(batch_ids: tuple[str, ...]) -> Callable[[], dict[str, str]]:
    return lambda: dict.fromkeys(batch_ids, "skipped")


def _record_of(records: PassRecords, destination_id: str) -> DestinationRecord | None:
    """The destination's record (does it coalesce, is it paused), or None: read once a pass per destination, not
    once per batch."""
    try:
        return records.find(destination_id) if destination_id else None
    except Exception:  # missing or unreadable: each batch on its own says why
        return None


def _single(services: Services, batch_id: str, hooks: Hooks, clock: Callable[[], datetime],
            records: PassRecords) -> Callable[[], dict[str, str]]:
    return lambda: {batch_id: _export_or_skip(services, batch_id, hooks, clock, records)}


def _runs_task(services: Services, destination_id: str, batch_ids: list[str], hooks: Hooks,
               clock: Callable[[], datetime], records: PassRecords, *, staged_bytes: int | None = None,
               record_types: frozenset[str] | None = None) -> Task:
    def run() -> dict[str, str]:
        try:
            record = records.get(destination_id)
            return export_destination_runs(services, record, batch_ids, hooks, clock, record_types=record_types)
        except Exception as exc:  # one destination's trouble must not stop the pass
            log_event(log, "run export interrupted; its batches stay due", logging.WARNING,
                      destination_id=destination_id, error=type(exc).__name__,
                      exc_info=None if isinstance(exc, AppError) else exc)
            return dict.fromkeys(batch_ids, "skipped")

    return Task(destination_id, tuple(batch_ids), run, staged_bytes)


def _export_or_skip(services: Services, batch_id: str, hooks: Hooks, clock: Callable[[], datetime],
                    records: PassRecords) -> str:
    try:
        return export_one(services, batch_id, hooks=hooks, clock=clock, records=records)
    except Exception as exc:  # one batch's trouble (e.g. control storage) must not stop the pass
        log_event(log, "batch export interrupted; it stays due", logging.WARNING, batch_id=batch_id,
                  error=type(exc).__name__, exc_info=None if isinstance(exc, AppError) else exc)
        return "skipped"


def export_one(services: Services, batch_id: str, *, hooks: Hooks, clock: Callable[[], datetime],
               records: PassRecords | None = None) -> str:
    """Claim one batch and export it. Returns 'landed', 'failed', 'retried' or 'skipped'."""
    control = services.control
    lease = BatchLease(control.container, state_blob(batch_id), services.settings.lease_seconds)
    if not lease.acquire():
        return "skipped"  # held by another worker, or no state (an intake not committed: settle_staging)
    with lease:
        doc = control.get(state_blob(batch_id), lease=lease.id)
        if doc is None:
            return "skipped"
        state = BatchState.from_json(doc.data)
        if state.run_id is not None and not state.finished:
            return IN_RUN  # a member of a coalesced run: exported with its run (shared.export.runs)
        # Re-check under the lease: the index can lag behind the state.
        if state.finished:
            settle_finished(control, state)
            return "skipped"
        if state.waiting_at(clock()):
            return "skipped"
        with telemetry.exporting("batch", state.destination_id, state.type, batch_id=batch_id,
                                 records=state.records, attempt=state.attempts + 1) as span:
            held = _Held(control, lease, state)
            return telemetry.said(span, _attempt(services, held, hooks, clock, records or PassRecords(services)))


def _attempt(services: Services, held: _Held, hooks: Hooks, clock: Callable[[], datetime],
             records: PassRecords) -> str:
    started = clock()
    interrupted = held.state.state == "running"
    if transitions.crashed_too_often(held.state, services.settings.max_attempts):
        return _give_up_after_crashes(services, held, started)
    batch_id, destination_id = held.state.batch_id, held.state.destination_id
    starting = transitions.start_attempt(held.state, started)
    try:
        record = records.get(destination_id)
    except NotFound:
        held.save(starting)
        return _fail(services, held, DestinationProblem(
            f"destination '{destination_id}' no longer exists; recreate it and retry the batch",
            code="destination_missing"), clock())
    if not record.owns(held.state):
        held.save(starting)
        return _fail(services, held, DestinationProblem(
            f"destination deleted: '{destination_id}' was deleted and created again after this batch was accepted; "
            "the new destination does not export the old one's batches", code="destination_deleted"), clock())
    plan = _plan(services, record, starting)
    outputs = output_partitions(starting.partitions, record.partition)
    previous = set(starting.written_blobs) | {b.name for b in starting.blobs}
    # The attempt starts with every partition's first part on record, in one save, before any is written (a
    # crash after a commit still knows the part exists); only the further parts of a large partition are
    # recorded one by one.
    held.save(transitions.record_parts(starting, plan.first_part_names(outputs), started))
    context: dict[str, Any] = {"batch_id": batch_id, "destination_id": destination_id,
                               "attempt": held.state.attempts, "resumed_after_interruption": interrupted}
    log_event(log, "batch export started", **context)
    try:
        result, manifest_name, kept = with_destination(
            record, services.secrets, services.clients,
            lambda container: _write(container, plan, outputs, previous, held, hooks, services.control.stream, clock),
        )
    except LeaseLost:
        # Another worker may own the batch now; it records the outcome, we must not write.
        log_event(log, "lease lost; leaving the batch to its new owner", logging.WARNING, **context)
        return "skipped"
    except Exception as exc:  # every failure is classified and recorded
        problem = _replaced_secret_is_retryable(services, record, describe_failure(exc, record, clock()))
        if problem.code == "internal_error":  # a bug, not the destination: the operator needs the traceback
            log_event(log, "batch export raised an unexpected error", logging.ERROR, **context,
                      error=type(exc).__name__, exc_info=exc)
        return _fail(services, held, problem, clock())
    finished = clock()
    held.lease.check()
    held.save(transitions.land(
        held.state, finished, files=result.files,
        output_bytes=result.bytes, manifest=manifest_name, kept=kept,
    ))
    delete_staged_at_landing(services.settings, held.state, held.save, services.control)
    log_event(log, "batch landed", **context, records=result.records, files=len(result.files), bytes=result.bytes,
              duration_seconds=round((finished - started).total_seconds(), 3))
    telemetry.files_written(destination_id, held.state.type, files=len(result.files), written_bytes=result.bytes)
    telemetry.batch_landed(destination_id, held.state.type, records=held.state.records,
                           accepted_at=held.state.created_at, landed_at=finished)
    return "landed"


def _replaced_secret_is_retryable(services: Services, record: DestinationRecord,
                                  problem: DestinationProblem) -> DestinationProblem:
    """A save of the destination during the export replaces its secret and deletes the old one: the next
    attempt uses the new record, so a secret missing for that reason is not a failure to give up on."""
    if problem.code != "secret_not_found":
        return problem
    try:
        current = services.destinations.get_record(record.id)
    except NotFound:
        return problem
    if current.secret_name == record.secret_name:
        return problem
    return DestinationProblem("the destination's credentials were replaced during the export; retrying with "
                              "the new ones", code="credentials_replaced", retryable=True)


def _plan(services: Services, record: DestinationRecord, state: BatchState) -> ExportPlan:
    """How an attempt at one batch writes: its files are named for the batch, in the destination's format."""
    settings = services.settings
    assert state.export_date is not None  # start_attempt fixed it
    return ExportPlan(
        run_id=state.batch_id, destination_id=state.destination_id, record_type=state.type,
        prefix=record.prefix, fmt=record.format, compression=record.compression,
        export_date=state.export_date, part_max_bytes=settings.part_max_bytes,
        block_bytes=settings.block_bytes, max_in_flight=settings.upload_concurrency, gzip_level=settings.gzip_level,
        attempt_tag=new_attempt_tag(),  # unique per attempt: a commit names only its own blocks
        file_concurrency=settings.file_concurrency, destination=record, control=services.control,
    )


def _write(container: Any, plan: ExportPlan, outputs: list[OutputPartition], previous: set[str], held: _Held,
           hooks: Hooks, stream: Read, clock: Callable[[], datetime]) -> tuple[Any, str, list[str]]:
    """Write the batch's files, then its manifest; delete what an earlier attempt left that this one did not
    write again. (files, manifest name, stale files the credentials could not delete)."""
    lease, state = held.lease, held.state
    recording = threading.Lock()  # small partitions are written several at once

    def before_commit(name: str) -> None:
        lease.check()
        with recording:
            recorded = transitions.record_parts(held.state, [name], now_utc())
            if recorded is not held.state:  # not already on record
                held.save(recorded)
        if hooks.before_commit is not None:
            hooks.before_commit(name)

    result = write_run(container, plan, outputs, staged_reader(stream), before_commit)
    lease.check()
    manifest = build_manifest(plan, result, iso(state.created_at), clock())
    manifest_name = write_manifest(container, plan, manifest)
    written = {f.name for f in result.files}
    kept = delete_stale(container, sorted(previous - written))
    return result, manifest_name, kept




def _give_up_after_crashes(services: Services, held: _Held, moment: datetime) -> str:
    control, state = services.control, held.state
    held.save(transitions.give_up_after_crashes(state, moment, max_attempts=services.settings.max_attempts))
    control.put_bytes(failed_marker(state.destination_id, state.batch_id), b"")
    log_event(log, "batch failed", logging.WARNING, batch_id=state.batch_id, destination_id=state.destination_id,
              attempt=state.attempts, error_code="worker_crashed", crashes=held.state.crashes,
              reason=repr(held.state.last_error.message if held.state.last_error else ""))
    telemetry.batch_failed(state.destination_id, state.type, records=state.records, error_code="worker_crashed")
    return "failed"




def _fail(services: Services, held: _Held, problem: DestinationProblem, moment: datetime) -> str:
    control, settings, state = services.control, services.settings, held.state
    context: dict[str, Any] = {"batch_id": state.batch_id, "destination_id": state.destination_id,
                               "attempt": state.attempts, "error_code": problem.code}
    telemetry.note(error_code=problem.code)
    if transitions.may_back_off(state, problem, settings.max_attempts):
        due = moment + timedelta(seconds=backoff_delay(settings, state.attempts))
        held.save(transitions.back_off(state, problem, moment, due=due, max_attempts=settings.max_attempts))
        log_event(log, "batch will be retried", logging.WARNING, **context, next_attempt_at=iso(due),
                  reason=repr(problem.message))
        return "retried"
    held.save(transitions.fail(state, problem, moment))
    control.put_bytes(failed_marker(state.destination_id, state.batch_id), b"")
    log_event(log, "batch failed", logging.WARNING, **context, reason=repr(problem.message))
    telemetry.batch_failed(state.destination_id, state.type, records=state.records)
    return "failed"
