"""The timer as the sweeper (issue 14): it finds the due batches whose export message was lost and sends it
again, then applies retention. The queue does the exporting; the timer only makes sure nothing is forgotten.

A batch is due from its open marker's time (`shared.control.batch_index`); its message is sent at intake, or by the
consumer that last looked at it, to be visible by then. A batch still due QUEUE_GRACE_SECONDS after that has
lost its message (intake could not send it, or a consumer died after taking it and the host gave up): the
sweeper sends it again. A duplicate costs a look at a batch already landed or held, nothing more. With no
export queue (a connection that names no queue service), or when sending fails, the sweeper exports those
batches itself, as the timer did before the queue existed. Orphans (a staging marker whose intake never
committed) are collected as the sweep lists the open markers (`shared.control.batches.settle_staging`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.control.batches import now_utc
from shared.control.export_queue import ExportUnit
from shared.export.runner import Due, PassSummary, due_batches, run_export_pass
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSummary:
    overdue: int  # due for longer than the grace period
    sent: int  # their messages sent again
    exported: PassSummary | None  # what the sweeper exported itself (no queue, or sending failed)


def sweep_due(services: Services, *, clock: Callable[[], datetime] = now_utc) -> SweepSummary:
    """Send again the messages of batches due for longer than QUEUE_GRACE_SECONDS; export them if it cannot."""
    queue = services.export_queue
    if queue is None:
        return SweepSummary(overdue=0, sent=0, exported=run_export_pass(services, clock=clock))
    now = clock()
    grace = timedelta(seconds=services.settings.queue_grace_seconds)
    overdue = _not_paused(services, due_batches(services, now - grace))
    left: list[Due] = []
    sent = 0
    for batch in overdue:
        try:
            queue.send(ExportUnit(batch_id=batch.batch_id, destination_id=batch.destination_id))
            sent += 1
        except Exception as exc:  # the queue failing, or a marker no unit can name: exported here instead
            log_event(log, "export message not sent again; exporting it now", logging.WARNING,
                      batch_id=batch.batch_id, error=type(exc).__name__)
            left.append(batch)
    exported = run_export_pass(services, due=left, clock=clock) if left else None
    if overdue:
        log_event(log, "sweeper sent overdue batches again", overdue=len(overdue), sent=sent, exported=len(left))
    return SweepSummary(overdue=len(overdue), sent=sent, exported=exported)


def _not_paused(services: Services, overdue: list[Due]) -> list[Due]:
    """Leave out a paused destination's batches (issue 17): their messages are sent by its resume, not every
    sweep. One record read per destination with overdue batches (a missing one: its batches find out why)."""
    paused = set()
    for destination_id in {b.destination_id for b in overdue}:
        try:
            if services.destinations.get_record(destination_id).paused is not None:
                paused.add(destination_id)
        except Exception:
            continue
    return [b for b in overdue if b.destination_id not in paused]
