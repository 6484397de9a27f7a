"""Coalesced runs: the due batches of a destination with `coalesce` set, exported together as one file per
partition and one manifest per run (`shared.control.runs` holds the run documents and says how membership is
settled before any file is written).

Under the destination's run lease (one worker per destination and record type; destinations in parallel):
1. batches in an open run (or a failed one, retried) redo that run: the same members that are still to land,
   the same file names; parts an earlier attempt wrote and this one did not are deleted;
2. batches in no run form new runs, in creation order, each closing at `target_file_mb` of staged records;
   with `max_delay_seconds`, a run too small for its target waits until its oldest batch is that old;
3. a run that lands lands each member (its state names the run and its manifest); one that fails records the
   reason on each member, which backs off or fails as a batch on its own would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared import telemetry
from shared.control import runs as run_docs
from shared.control import transitions
from shared.control.batch_state import RECORD_TYPES, BatchState, LandedFile, iso
from shared.control.batches import (
    after_saved,
    failed_marker,
    now_utc,
    put_state,
    save_state,
    settle_finished,
    state_blob,
)
from shared.control.leases import BatchLease, LeaseLost
from shared.control.retention import delete_staged_at_landing
from shared.control.runs import RunMember, RunState
from shared.control.store import ControlStore, LeaseHeld, PreconditionFailed
from shared.destinations.access import with_destination
from shared.destinations.failures import describe_failure
from shared.destinations.record import CoalesceSettings, DestinationRecord
from shared.errors import DestinationProblem
from shared.export.backoff import backoff_delay
from shared.export.batch_writer import (
    ExportPlan,
    build_manifest,
    delete_stale,
    output_partitions,
    write_manifest,
    write_run,
)
from shared.export.block_upload import new_attempt_tag
from shared.export.staged_reads import staged_reader
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.export.runner import Hooks
    from shared.services import Services

log = logging.getLogger(__name__)
ON_ITS_OWN = "on_its_own"  # a batch whose export on its own was interrupted: the pass takes it over as such
MEMBER_WORKERS = 16  # member states read and saved at once: each is a round trip or a few
_member_work = ThreadPoolExecutor(max_workers=MEMBER_WORKERS, thread_name_prefix="run")
T = TypeVar("T")


@dataclass
class _Member:
    state: BatchState
    etag: str


def export_destination_runs(services: Services, record: DestinationRecord, batch_ids: Sequence[str], hooks: Hooks,
                            clock: Callable[[], datetime], *,
                            record_types: Collection[str] | None = None) -> dict[str, str]:
    """Export a destination's due batches as runs; each batch's outcome ('landed', 'failed', 'retried' or
    'skipped'). Batches of each record type are exported under that type's run lease; `record_types`, the types
    among the batches when their markers said: no other type's lease is asked for.

    The leases are taken before any state is read: while another worker is at this destination's runs (every
    queue message of a busy destination asks), asking costs two requests a type, not a read of every batch."""
    control = services.control
    held: dict[str, BatchLease] = {}
    for record_type in [t for t in RECORD_TYPES if record_types is None or t in record_types]:
        lease = BatchLease(control.container, run_docs.ensure_group_lease_blob(control, record.id, record_type),
                           services.settings.lease_seconds)
        if lease.acquire():
            held[record_type] = lease
    try:
        members = _read(control, batch_ids) if held else []
        outcomes = dict.fromkeys(batch_ids, "skipped")  # a type whose lease another worker holds
        for held_type, lease in held.items():
            group = [m for m in members if m.state.type == held_type]
            if not group:
                continue
            try:
                outcomes.update(_export_group(services, record, group, lease, hooks, clock))
            except LeaseLost:
                log_event(log, "run lease lost; leaving the runs to the next pass", logging.WARNING,
                          destination_id=record.id, type=held_type)
    finally:
        for lease in held.values():
            lease.release()
    return outcomes


def _export_group(services: Services, record: DestinationRecord, group: Sequence[_Member], lease: BatchLease,
                  hooks: Hooks, clock: Callable[[], datetime]) -> dict[str, str]:
    """The group's states were read before the lease was taken: each change to one is conditional on the state
    read (joining a run) or made under this lease, so a state that changed meanwhile is left out, never
    overwritten."""
    control, now = services.control, clock()
    batch_ids = [m.state.batch_id for m in group]
    for finished in (m.state for m in group if m.state.finished):  # its worker died before its open marker went
        settle_finished(control, finished)
    members = [m for m in group if not m.state.finished and not m.state.waiting_at(now)]
    runs: dict[str, RunState] = {}
    landed_runs: dict[str, RunState] = {}
    landed_with_run: dict[str, list[_Member]] = {}  # by run: members whose run landed without them saying so
    free: list[_Member] = []
    on_its_own: list[str] = []
    for member in members:
        run_id = member.state.run_id
        if run_id is not None and run_id not in runs and run_id not in landed_runs:
            found = run_docs.get_run(control, run_id)
            if found is not None:
                (runs if found[0].state != "landed" else landed_runs)[run_id] = found[0]
        if run_id is not None and run_id in runs:
            continue
        landed_run = landed_runs.get(run_id or "")
        if landed_run is not None and member.state.state == "running" and member.state.batch_id in landed_run.batch_ids:
            landed_with_run.setdefault(landed_run.run_id, []).append(member)  # its worker died before it said so
            continue
        if member.state.state != "pending":  # running in no run: its own export died before coalesce was set
            on_its_own.append(member.state.batch_id)
            continue
        if run_id is not None:  # its run landed without it: it starts again in a new one
            try:
                member = _save(control, member, transitions.leave_closed_run(member.state, now), conditional=True)
            except (PreconditionFailed, LeaseHeld):  # changed since read: the next pass sees it as it is now
                continue
        free.append(member)
    outcomes: dict[str, str] = {}
    for run_id, stragglers in landed_with_run.items():
        outcomes.update(_land_with_landed_run(services, stragglers, landed_runs[run_id]))
    for run in sorted(runs.values(), key=lambda r: r.run_id):
        outcomes.update(_redo(services, record, run, lease, hooks, clock))
    if record.coalesce is not None:
        for chunk in _chunks(free, record.coalesce, now):
            outcomes.update(_form(services, record, chunk, lease, hooks, clock))
    outcomes.update(dict.fromkeys(on_its_own, ON_ITS_OWN))  # the pass finishes each as it was begun
    return {batch_id: outcomes.get(batch_id, "skipped") for batch_id in batch_ids}  # skipped: waits for others


def _chunks(free: list[_Member], coalesce: CoalesceSettings, now: datetime) -> Iterable[list[_Member]]:
    """Runs of batches in creation order, each closing at the target size; the last, if under its target, only
    once its oldest batch has waited `max_delay_seconds`."""
    target = coalesce.target_file_mb * 1024 * 1024
    chunk: list[_Member] = []
    size = 0
    for member in sorted(free, key=lambda m: (m.state.created_at, m.state.batch_id)):
        chunk.append(member)
        size += member.state.staged_bytes
        if size >= target:
            yield chunk
            chunk, size = [], 0
    if chunk and now - chunk[0].state.created_at >= timedelta(seconds=coalesce.max_delay_seconds):
        yield chunk


def _form(services: Services, record: DestinationRecord, chunk: list[_Member], lease: BatchLease, hooks: Hooks,
          clock: Callable[[], datetime]) -> dict[str, str]:
    """A new run of `chunk`: written unsealed, joined by each batch that can, sealed with those, exported."""
    control, now = services.control, clock()
    run = RunState(
        run_id=run_docs.new_run_id(now), destination_id=record.id, type=chunk[0].state.type,
        members=tuple(RunMember(batch_id=m.state.batch_id, records=m.state.records) for m in chunk),
        sealed=False, state="open", export_date=now.strftime("%Y-%m-%d"), created_at=now, updated_at=now,
    )
    etag = run_docs.create_run(control, run)
    return _settle_and_export(services, record, run, etag, chunk, lease, hooks, clock)


def _redo(services: Services, record: DestinationRecord, run: RunState, lease: BatchLease, hooks: Hooks,
          clock: Callable[[], datetime]) -> dict[str, str]:
    found = run_docs.get_run(services.control, run.run_id)
    assert found is not None
    run, etag = found
    members = _read(services.control, run.batch_ids)
    if run.sealed:
        active = [m for m in members if m.state.run_id == run.run_id and m.state.state in {"pending", "running"}]
        if run.state == "failed":  # a member was retried: the run is redone with the members waiting again
            etag = run_docs.save_run(services.control, run.changed(state="open", updated_at=clock()), etag)
        return _export_run(services, record, run, etag, active, lease, hooks, clock)
    return _settle_and_export(services, record, run, etag, members, lease, hooks, clock)


def _settle_and_export(services: Services, record: DestinationRecord, run: RunState, etag: str,
                       candidates: list[_Member], lease: BatchLease, hooks: Hooks,
                       clock: Callable[[], datetime]) -> dict[str, str]:
    control, now = services.control, clock()
    lease.check()

    def join(member: _Member) -> _Member | None:
        """A batch joins the run and starts its attempt in one conditional write (a member found already in
        the run, from an attempt that died before the run was sealed, starts again in `_export_run`)."""
        state = member.state
        if state.run_id == run.run_id:
            return member
        if state.state != "pending" or state.run_id is not None:
            return None
        try:
            change = transitions.start_attempt(transitions.join_run(state, run.run_id, now), now)
            joined = _save(control, member, change, conditional=True)
        except (PreconditionFailed, LeaseHeld):  # changed since read, or a worker holds it: not in this run
            return None
        started.add(state.batch_id)
        return joined

    started: set[str] = set()
    joined = [m for m in _each(join, candidates) if m is not None]
    by_id = {m.state.batch_id: m for m in joined}
    members = tuple(member for member in run.members if member.batch_id in by_id)
    if not members:
        control.delete(run_docs.run_blob(run.run_id))
        return {}
    run = run.changed(members=members, sealed=True, updated_at=now)
    etag = run_docs.save_run(control, run, etag)
    log_event(log, "run formed", run_id=run.run_id, destination_id=run.destination_id, type=run.type,
              batches=len(members), records=sum(m.records for m in members))
    return _export_run(services, record, run, etag, [by_id[m.batch_id] for m in members], lease, hooks, clock,
                       started=frozenset(started))


class _RunRecorder:
    """The run document while its files are written: parts are put on record before their commit."""

    def __init__(self, control: ControlStore, run: RunState, etag: str):
        self.control, self.run, self.etag = control, run, etag
        self._lock = threading.Lock()

    def record(self, names: Sequence[str], moment: datetime) -> None:
        with self._lock:
            new = [name for name in dict.fromkeys(names) if name not in self.run.written_blobs]
            if new:
                self.save(self.run.changed(written_blobs=(*self.run.written_blobs, *new), updated_at=moment))

    def save(self, run: RunState) -> None:
        self.etag = run_docs.save_run(self.control, run, self.etag)
        self.run = run


def _export_run(services: Services, record: DestinationRecord, run: RunState, etag: str, members: list[_Member],
                lease: BatchLease, hooks: Hooks, clock: Callable[[], datetime],
                started: frozenset[str] = frozenset()) -> dict[str, str]:
    """Export a sealed run, in its span (`export run`, its outcome the members' own)."""
    with telemetry.exporting("run", run.destination_id, run.type, run_id=run.run_id, batches=len(members),
                             records=sum(m.state.records for m in members)) as span:
        outcomes = _export_sealed(services, record, run, etag, members, lease, hooks, clock, started)
        telemetry.said(span, telemetry.run_outcome(outcomes.values()))
        return outcomes


def _export_sealed(services: Services, record: DestinationRecord, run: RunState, etag: str, members: list[_Member],
                   lease: BatchLease, hooks: Hooks, clock: Callable[[], datetime],
                   started: frozenset[str] = frozenset()) -> dict[str, str]:
    """Export a sealed run. `started`: members whose attempt began as they joined; the others begin it here."""
    control, settings = services.control, services.settings
    recorder = _RunRecorder(control, run, etag)
    if not members:
        recorder.save(run.changed(state="failed", updated_at=clock()))
        return {}
    to_start = [m for m in members if m.state.batch_id not in started]
    if any(transitions.crashed_too_often(m.state, settings.max_attempts) for m in to_start):
        return _give_up(services, recorder, members, clock(), started)
    moment = clock()

    def start(member: _Member) -> _Member:
        if member.state.batch_id in started:
            return member
        return _save(control, member, transitions.start_attempt(member.state, moment))

    try:
        members = list(_each(start, members))
    except LeaseHeld:
        return dict.fromkeys((m.state.batch_id for m in members), "skipped")
    context: dict[str, Any] = {"run_id": run.run_id, "destination_id": run.destination_id, "batches": len(members)}
    log_event(log, "run export started", **context)
    telemetry.note(attempt=max(m.state.attempts for m in members))
    try:
        result, manifest_name, kept = with_destination(
            record, services.secrets, services.clients,
            lambda container: _write(services, container, record, recorder, members, lease, hooks, clock),
        )
    except LeaseLost:
        raise
    except Exception as exc:  # every failure is classified and recorded on each member
        problem = describe_failure(exc, record, clock())
        if problem.code == "internal_error":
            log_event(log, "run export raised an unexpected error", logging.ERROR, **context,
                      error=type(exc).__name__, exc_info=exc)
        telemetry.note(error_code=problem.code)
        return _fail_members(services, recorder, members, problem, clock())
    finished = clock()
    lease.check()
    recorder.save(recorder.run.changed(state="landed", files=tuple(result.files), manifest=manifest_name,
                                       written_blobs=(), updated_at=finished))

    outcomes = _land_members(services, members, run, files=result.files, output_bytes=result.bytes,
                             manifest=manifest_name, kept=kept, finished=finished)
    log_event(log, "run landed", **context, records=result.records, files=len(result.files), bytes=result.bytes,
              duration_seconds=round((finished - moment).total_seconds(), 3))
    telemetry.files_written(run.destination_id, run.type, files=len(result.files), written_bytes=result.bytes)
    return outcomes


def _land_members(services: Services, members: Sequence[_Member], run: RunState, *, files: Sequence[LandedFile],
                  output_bytes: int, manifest: str, kept: Sequence[str], finished: datetime) -> dict[str, str]:
    """Members of a landed run: each state says landed (naming the run's files and manifest), the states saved at
    once and then indexed together (their open markers go in one request, their landings in one activity write);
    then each member's staged records go if they are not kept."""
    control = services.control

    def land(member: _Member) -> _Member:
        state = transitions.land(member.state, finished, files=files, output_bytes=output_bytes, manifest=manifest,
                                 kept=kept)
        return _Member(state, put_state(control, state))

    landed = _each(land, members)
    after_saved(control, [m.state for m in landed], previous="running")
    for member in landed:
        telemetry.batch_landed(run.destination_id, run.type, records=member.state.records,
                               accepted_at=member.state.created_at, landed_at=finished)

    def delete_staged(member: _Member) -> None:
        def save_held(state: BatchState) -> None:
            _save(control, member, state)

        delete_staged_at_landing(services.settings, member.state, save_held, control)

    _each(delete_staged, landed)
    return dict.fromkeys((m.state.batch_id for m in landed), "landed")


def _land_with_landed_run(services: Services, members: Sequence[_Member], run: RunState) -> dict[str, str]:
    """Members still running in a run whose document says landed: the worker died after the run's files and
    manifest (which lists them) were written and recorded, before their states said so. They landed with their
    run: their states are brought up to date, nothing is written again."""
    for member in members:
        log_event(log, "batch landed with its run (its worker died before recording it)",
                  batch_id=member.state.batch_id, run_id=run.run_id, destination_id=run.destination_id)
    return _land_members(services, members, run, files=run.files, output_bytes=sum(f.bytes for f in run.files),
                         manifest=run.manifest or "", kept=(), finished=run.updated_at)


def _write(services: Services, container: Any, record: DestinationRecord, recorder: _RunRecorder,
           members: list[_Member], lease: BatchLease, hooks: Hooks,
           clock: Callable[[], datetime]) -> tuple[Any, str, list[str]]:
    settings, run = services.settings, recorder.run
    plan = ExportPlan(
        run_id=run.run_id, destination_id=run.destination_id, record_type=run.type, prefix=record.prefix,
        fmt=record.format, compression=record.compression, export_date=run.export_date,
        part_max_bytes=settings.part_max_bytes, block_bytes=settings.block_bytes,
        max_in_flight=settings.upload_concurrency, gzip_level=settings.gzip_level, attempt_tag=new_attempt_tag(),
        file_concurrency=settings.file_concurrency, destination=record, control=services.control,
    )
    order = {m.batch_id: index for index, m in enumerate(run.members)}
    states = sorted((m.state for m in members), key=lambda s: order[s.batch_id])
    outputs = output_partitions([p for state in states for p in state.partitions], record.partition)
    previous = set(run.written_blobs)
    recorder.record(plan.first_part_names(outputs), now_utc())

    def before_commit(name: str) -> None:
        lease.check()
        recorder.record([name], now_utc())
        if hooks.before_commit is not None:
            hooks.before_commit(name)

    result = write_run(container, plan, outputs, staged_reader(services.control.stream), before_commit)
    lease.check()
    batches = [{"batch_id": s.batch_id, "records": s.records} for s in states]
    manifest = build_manifest(plan, result, iso(run.created_at), clock(), batches=batches)
    manifest_name = write_manifest(container, plan, manifest)
    kept = delete_stale(container, sorted(previous - {f.name for f in result.files}))
    return result, manifest_name, kept


def _fail_members(services: Services, recorder: _RunRecorder, members: list[_Member], problem: DestinationProblem,
                  moment: datetime) -> dict[str, str]:
    control, settings = services.control, services.settings

    def record(member: _Member) -> str:
        state = member.state
        context: dict[str, Any] = {"batch_id": state.batch_id, "run_id": state.run_id,
                                   "destination_id": state.destination_id, "attempt": state.attempts,
                                   "error_code": problem.code}
        if transitions.may_back_off(state, problem, settings.max_attempts):
            due = moment + timedelta(seconds=backoff_delay(settings, state.attempts))
            _save(control, member, transitions.back_off(state, problem, moment, due=due,
                                                        max_attempts=settings.max_attempts))
            log_event(log, "batch will be retried", logging.WARNING, **context, reason=repr(problem.message))
            return "retried"
        _save(control, member, transitions.fail(state, problem, moment))
        control.put_bytes(failed_marker(state.destination_id, state.batch_id), b"")
        log_event(log, "batch failed", logging.WARNING, **context, reason=repr(problem.message))
        telemetry.batch_failed(state.destination_id, state.type, records=state.records)
        return "failed"

    outcomes = dict(zip((m.state.batch_id for m in members), _each(record, members), strict=True))
    if "retried" not in outcomes.values():
        recorder.save(recorder.run.changed(state="failed", updated_at=moment))
    return outcomes


def _give_up(services: Services, recorder: _RunRecorder, members: list[_Member], moment: datetime,
             started: frozenset[str]) -> dict[str, str]:
    """A run whose export killed its worker every time: every member fails with the reason."""
    crashes = max(m.state.crashes for m in members) + 1
    problem = DestinationProblem(
        f"the export of its run {recorder.run.run_id} crashed the worker {crashes} times (the process died "
        "mid-export, for example out of memory); the batch is not tried again until it is retried",
        code="worker_crashed")
    running = [m if m.state.batch_id in started
               else _save(services.control, m, transitions.start_attempt(m.state, moment)) for m in members]
    return _fail_members(services, recorder, running, problem, moment)


def _read(control: ControlStore, batch_ids: Sequence[str]) -> list[_Member]:
    def read(batch_id: str) -> _Member | None:
        doc = control.get(state_blob(batch_id))
        return None if doc is None else _Member(BatchState.from_json(doc.data), doc.etag)

    return [m for m in _each(read, list(batch_ids)) if m is not None]


def _save(control: ControlStore, member: _Member, state: BatchState, *, conditional: bool = False) -> _Member:
    if state is member.state:
        return member
    etag = save_state(control, state, etag=member.etag if conditional else None, previous=member.state.state)
    return _Member(state, etag)


def _each(work: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """`work` on every item, MEMBER_WORKERS at once over every run of the process (round trips to control storage
    overlap; the threads are started once, not per call). `work` never calls `_each` itself: it would wait for
    threads its callers hold."""
    if len(items) <= 1:
        return [work(item) for item in items]
    return list(_member_work.map(work, items))
