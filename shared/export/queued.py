"""The queue path (issue 14): what one export-queue message does, and the consumer that `make serve` and
`scripts.worker` run. In Azure the queue trigger (function_app.py) calls `handle_message` and
`handle_poisoned` itself; the Functions host receives, hides, deletes and poisons the messages, and scales
instances out on the queue's length. Here `consume_once` does what the host does, with the same settings
(host.json, `QueueOptions.from_host_json`).

A message names a batch (`ExportUnit`). Handling it exports that batch on its own under its lease, or, for a
destination that coalesces, that batch and the destination's open batches of its type created after it as runs
under the run lease (`_open_after`): exactly what an export pass does with them (`run_export_pass(due=...)`).
Then the batch is looked at again: finished, the message is done; waiting (a backoff, or a run waiting for
`max_delay_seconds`), the unit is sent again to be visible when it is due; due but held by another worker, it is
sent again to be looked at after RECHECK_SECONDS. A unit sent on MAX_HOPS times is left to the timer
(`shared.export.sweeper`).

A destination that coalesces and waits (`max_delay_seconds` > 0) gets one message per record type and delay from
each instance, not one per batch (`shared.control.export_queue.Covers`): the batches committed meanwhile are
exported by that message's handling, even when its own batch landed before (the destination's markers newer than
it are read, `_open_after`), and one of them that still waits after it gets the next message.

Nothing here raises for a batch's own trouble: a message that raises is one whose handling crashed (control
storage down, a bug), retried by the host after its visibility timeout and poisoned after `maxDequeueCount`,
which fails the batch with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from shared.control import batch_index, transitions
from shared.control.batch_state import BatchState
from shared.control.batches import failed_marker, now_utc, save_state, state_blob
from shared.control.export_queue import ExportQueue, ExportUnit, MalformedMessage, Received, decode_unit
from shared.control.store import LeaseHeld, PreconditionFailed
from shared.destinations.record import DestinationRecord
from shared.errors import DestinationProblem
from shared.export.pass_records import PassRecords
from shared.export.runner import Due, pause_failing, run_export_pass
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)

RECHECK_SECONDS = 15  # a unit due but held by another worker is looked at again after this
MAX_HOPS = 240  # a unit sent on this many times (an hour of rechecks at least) is left to the timer


@dataclass(frozen=True)
class Handled:
    """What handling a message did: `outcome` is the batch's outcome ('landed', 'failed', 'retried',
    'skipped'), or 'done' (nothing left to do), 'dropped' (not an export unit), 'left' (to the timer), 'paused'
    (its destination is paused: the message is done, and resuming the destination sends it again)."""

    outcome: str
    batch_id: str | None = None
    sent_on_after: float | None = None  # seconds: the unit was sent again, visible after this


def first_delay(record: DestinationRecord) -> float:
    """How long a new batch's message stays invisible: a destination that coalesces with a delay waits for its
    run to be due, any other batch is exported at once."""
    return float(record.coalesce.max_delay_seconds) if record.coalesce is not None else 0.0


def handle_message(services: Services, body: bytes | str, *,
                   clock: Callable[[], datetime] = now_utc) -> Handled:
    """Export the unit a message names; never raises for bad input or the batch's own trouble."""
    try:
        unit = decode_unit(body)
    except MalformedMessage as exc:
        log_event(log, "export message dropped", logging.WARNING, reason=repr(str(exc)))
        return Handled("dropped")
    records = PassRecords(services)
    record = records.find(unit.destination_id)  # None: deleted; the batch on its own finds that out and says so
    if record is not None and record.paused is not None:  # issue 17: not sent on; the resume sends it again
        log_event(log, "export message left to the destination's resume", batch_id=unit.batch_id,
                  destination_id=unit.destination_id)
        return Handled("paused", unit.batch_id)
    due = [Due(unit.batch_id, unit.destination_id)]
    waits = record is not None and record.coalesce is not None and record.coalesce.max_delay_seconds > 0
    if record is not None and record.coalesce is not None:  # its batch and those after it, as runs
        state = _state(services, unit.batch_id)
        if state is None or state.finished:  # an earlier message's run took it
            due = _open_after(services, state) if waits and state is not None else []
            if not due:
                return Handled("done", unit.batch_id)
        else:
            due = [Due(state.batch_id, state.destination_id, state.staged_bytes, state.type),
                   *_open_after(services, state)]
    summary = run_export_pass(services, due=due, clock=clock, records=records)
    outcome = next((b["outcome"] for b in summary.batches if b["batch_id"] == unit.batch_id), "skipped")
    handled = _follow_up(services, unit, record, outcome, clock())
    if waits and handled.sent_on_after is None:  # batches it covered that still wait get a message of their own
        waiting = [b["batch_id"] for b in summary.batches
                   if b["outcome"] == "skipped" and b["batch_id"] != unit.batch_id]
        if waiting:
            _follow_up(services, ExportUnit(batch_id=waiting[0], destination_id=unit.destination_id), record,
                       "skipped", clock())
    return handled


def _state(services: Services, batch_id: str) -> BatchState | None:
    """The batch's state; None when it is gone (collected as an orphan, or deleted). In a burst, a coalesced run
    takes the due batches of several messages, and the later messages find theirs landed: one read, where listing
    every open marker (which grows with the backlog) and a pass cost many."""
    doc = services.control.get(state_blob(batch_id))
    return None if doc is None else BatchState.from_json(doc.data)


def _open_after(services: Services, state: BatchState) -> list[Due]:
    """The open batches of a message's destination and type created after its own batch, oldest first: what its
    run may take besides its own batch (those a message on its way covered, `shared.control.export_queue.Covers`,
    among them). One listing of the destination's newest open markers, down to the batch's: not of every open
    batch of every destination, which each message of a coalescing destination read before. An older open batch
    has a message of its own (or the sweeper's, `shared.export.sweeper`)."""
    newer = batch_index.open_batches_newer(services.control, state.destination_id, state.created_at, state.batch_id)
    return [Due(marker.batch_id, state.destination_id, marker.staged_bytes, state.type)
            for marker in reversed(newer) if marker.state == "pending" and marker.record_type == state.type]


def _follow_up(services: Services, unit: ExportUnit, record: DestinationRecord | None, outcome: str,
               now: datetime) -> Handled:
    if outcome in {"landed", "failed"}:  # this handling finished the batch: nothing to look at again
        return Handled(outcome, unit.batch_id)
    doc = services.control.get(state_blob(unit.batch_id))
    if doc is None:
        return Handled("done", unit.batch_id)  # collected (an orphan), or deleted
    state = BatchState.from_json(doc.data)
    if state.finished:
        return Handled(state.state if outcome in {"landed", "failed"} else "done", unit.batch_id)
    if unit.hops >= MAX_HOPS:
        log_event(log, "export unit left to the timer", logging.WARNING, batch_id=unit.batch_id, hops=unit.hops)
        return Handled("left", unit.batch_id)
    delay = _wait_before_next_look(state, record, now)
    queue = services.export_queue
    if queue is None:
        return Handled(outcome, unit.batch_id)
    try:
        queue.send(unit.next_hop(), delay_seconds=delay)
    except Exception as exc:  # the timer finds the batch once its grace period is over
        log_event(log, "export message not sent on; the timer will find the batch", logging.WARNING,
                  batch_id=unit.batch_id, error=type(exc).__name__)
        return Handled(outcome, unit.batch_id)
    return Handled(outcome, unit.batch_id, sent_on_after=delay)


def _wait_before_next_look(state: BatchState, record: DestinationRecord | None, now: datetime) -> float:
    if state.waiting_at(now) and state.next_attempt_at is not None:  # a backoff: visible when it is due again
        return max(1.0, (state.next_attempt_at - now).total_seconds())
    if record is not None and record.coalesce is not None and state.run_id is None and state.state == "pending":
        waited = (now - state.created_at).total_seconds()
        if waited < record.coalesce.max_delay_seconds:  # its run waits for more batches
            return max(1.0, record.coalesce.max_delay_seconds - waited)
    return float(RECHECK_SECONDS)


def handle_poisoned(services: Services, body: bytes | str, *, dequeue_count: int | None = None,
                    clock: Callable[[], datetime] = now_utc) -> Handled:
    """A message whose handling crashed `maxDequeueCount` times: its batch, unless finished, fails with the
    reason (a retry makes it due again). A batch a worker holds right now is left to that worker."""
    try:
        unit = decode_unit(body)
    except MalformedMessage as exc:
        log_event(log, "poisoned export message dropped", logging.WARNING, reason=repr(str(exc)))
        return Handled("dropped")
    control = services.control
    doc = control.get(state_blob(unit.batch_id))
    if doc is None:
        return Handled("done", unit.batch_id)
    state = BatchState.from_json(doc.data)
    if state.finished:
        return Handled("done", unit.batch_id)
    times = f"{dequeue_count} times" if dequeue_count else "too many times"
    problem = DestinationProblem(
        f"exporting it crashed the export queue's consumer {times} (its message went to the queue "
        f"'{services.settings.export_queue_name}-poison'); it is not tried again until it is retried",
        code="export_message_poisoned")
    moment = clock()
    try:
        save_state(control, transitions.fail_poisoned(state, problem, moment), etag=doc.etag, previous=state.state)
    except (PreconditionFailed, LeaseHeld):
        return Handled("skipped", unit.batch_id)  # changed meanwhile, or being exported: its worker decides
    control.put_bytes(failed_marker(state.destination_id, state.batch_id), b"")
    log_event(log, "batch failed", logging.WARNING, batch_id=state.batch_id, destination_id=state.destination_id,
              error_code=problem.code, reason=repr(problem.message))
    pause_failing([state.destination_id], services)
    return Handled("failed", unit.batch_id)


@dataclass(frozen=True)
class QueueOptions:
    """The queue trigger's settings (host.json `extensions.queues`), which the local consumer follows too."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 10
    visibility_timeout_seconds: float = 30  # before a message whose handling raised is tried again
    max_polling_interval_seconds: float = 2
    # While a message is handled it stays invisible this long, renewed at a third of it (the host does the same
    # with its own figure): a consumer that dies mid-export lets the message reappear this soon.
    hold_seconds: int = 60

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        queues = json.loads(path.read_text())["extensions"]["queues"]
        return cls(batch_size=int(queues["batchSize"]), new_batch_threshold=int(queues["newBatchThreshold"]),
                   max_dequeue_count=int(queues["maxDequeueCount"]),
                   visibility_timeout_seconds=_seconds(queues["visibilityTimeout"]),
                   max_polling_interval_seconds=_seconds(queues["maxPollingInterval"]))


def _seconds(span: str) -> float:
    hours, minutes, seconds = span.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def consume_once(services: Services, queue: ExportQueue, options: QueueOptions,
                 pool: ThreadPoolExecutor | None = None) -> int:
    """Take up to `batch_size` messages and handle them (in `pool`, at once); return how many were taken."""
    received = queue.receive(max_messages=options.batch_size, visibility_seconds=options.hold_seconds)
    if pool is None:
        for item in received:
            _consume(services, queue, options, item)
    else:
        list(pool.map(lambda item: _consume(services, queue, options, item), received))
    return len(received)


def _consume(services: Services, queue: ExportQueue, options: QueueOptions, item: Received) -> None:
    if item.dequeue_count > options.max_dequeue_count:
        queue.to_poison(item)
        handle_poisoned(services, item.body, dequeue_count=item.dequeue_count - 1)
        return
    try:
        with _held(queue, item, options.hold_seconds):
            handle_message(services, item.body)
    except Exception as exc:  # left on the queue: visible again after the visibility timeout, as the host does
        log_event(log, "export message failed; it is tried again", logging.WARNING, error=type(exc).__name__,
                  dequeue_count=item.dequeue_count, exc_info=exc)
        with suppress(Exception):  # if this fails too, it reappears when its hold ends
            queue.keep_invisible(item, int(options.visibility_timeout_seconds))
        return
    queue.delete(item)


@contextmanager
def _held(queue: ExportQueue, item: Received, seconds: int) -> Iterator[None]:
    """Keep the message invisible while it is handled, renewing its hold at a third of `seconds`."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(seconds / 3):
            try:
                queue.keep_invisible(item, seconds)
            except Exception:
                return

    renewer = threading.Thread(target=renew, name="queue-hold", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()


def run_consumer(services: Services, queue: ExportQueue, options: QueueOptions, stop: threading.Event) -> None:
    """Consume until `stop` is set, as the host does: take `batch_size` messages, each handled in a thread of its
    own, and take the next `batch_size` once the messages in hand drop to `new_batch_threshold` (so at most
    their sum at once); poll an empty queue at most every `max_polling_interval_seconds`. On stop, the
    messages in hand are finished."""
    idle, failing = 0.1, False
    in_hand: set[Future[None]] = set()
    workers = max(1, options.batch_size + options.new_batch_threshold)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="consumer") as pool:
        while not stop.is_set():
            if len(in_hand) > options.new_batch_threshold:
                in_hand = set(wait(in_hand, timeout=idle, return_when=FIRST_COMPLETED).not_done)
                continue
            try:
                received = queue.receive(max_messages=options.batch_size, visibility_seconds=options.hold_seconds)
                if failing:
                    log_event(log, "export queue reachable again")
                failing = False
            except Exception as exc:  # the queue itself failing: said once, then tried again quietly
                if not failing:
                    log_event(log, "export queue unreachable; trying again", logging.WARNING,
                              error=type(exc).__name__)
                failing, received = True, []
            in_hand |= {pool.submit(_consume, services, queue, options, item) for item in received}
            idle = 0.1 if received else min(options.max_polling_interval_seconds, idle * 2)
            if not received:  # an empty queue: wait, waking early if a message in hand is done
                if in_hand:
                    in_hand = set(wait(in_hand, timeout=idle, return_when=FIRST_COMPLETED).not_done)
                else:
                    stop.wait(idle)
        wait(in_hand)
