"""How much export work a pass does at once: EXPORT_CONCURRENCY large tasks, or more small ones.

A task (a batch on its own, or a destination's coalesced runs of one record type) holds units of the pass's
slots while it exports, in proportion to the records it stages: one unit per SLOT_BYTES / UNITS_PER_SLOT, a whole
slot (UNITS_PER_SLOT units) from SLOT_BYTES up. Memory is what bounds large tasks (a slot is what one large batch's
export holds), but a small batch's export is a dozen round trips to storage that wait, not work: with two small
batches at a time the pass waited on the network most of the time. So two slots are two large batches at once, as
EXPORT_CONCURRENCY always meant, or sixteen small ones, or one large and eight small.

Tasks are let in in the order they ask (a large task waiting for a whole slot is not overtaken by small ones), and
a task asks once its size is known: after reading its state, under its lease (renewed while it waits).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

UNITS_PER_SLOT = 8
# Staged records of a task that takes a whole slot. A slot is what one batch of any size held before slots existed,
# and memory per staged byte is highest for Parquet (Arrow arrays, the writer's buffers): measured with make bench,
# 8 MiB let three or four 50,000-event batches (5-13 MB staged) run at once and the Parquet export's peak RSS went
# from 297 to 652 MB. From 2 MiB, such a batch is a whole slot as before; a task under 256 KiB (about a thousand
# events) is an eighth of one.
SLOT_BYTES = 2 * 1024 * 1024
MAX_TASKS = 16  # threads a pass runs tasks in, whatever the slots (each small task is mostly waiting)


def units_for(staged_bytes: int) -> int:
    """The units a task staging `staged_bytes` holds: at least one, at most a slot."""
    return max(1, min(UNITS_PER_SLOT, math.ceil(staged_bytes * UNITS_PER_SLOT / SLOT_BYTES)))


def tasks_at_once(slots: int) -> int:
    """The threads a pass with `slots` slots runs its tasks in."""
    return max(1, min(MAX_TASKS, slots * UNITS_PER_SLOT))


class ExportSlots:
    """A pass's slots, shared by its tasks' threads. `stop_at` (time.monotonic): a task let in later is not
    started (the pass stops taking new work then, and a task may have waited for its units past it)."""

    def __init__(self, slots: int, *, stop_at: float | None = None):
        self.capacity = max(1, slots) * UNITS_PER_SLOT
        self.stop_at = stop_at
        self._free = self.capacity
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    @contextmanager
    def held(self, staged_bytes: int) -> Iterator[int]:
        """Hold the units a task of this size takes (waiting for them, first come first served) while inside;
        yields the units held, or 0 when the task was let in after `stop_at` (it holds nothing and must not
        start)."""
        units = units_for(staged_bytes)
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            while self._waiting[0] is not ticket or self._free < units:
                self._changed.wait()
            self._waiting.popleft()
            late = self.stop_at is not None and time.monotonic() > self.stop_at
            self._free -= 0 if late else units
            self._changed.notify_all()  # the next in line may fit in what is left
        if late:
            yield 0
            return
        try:
            yield units
        finally:
            with self._changed:
                self._free += units
                self._changed.notify_all()


@contextmanager
def within_slots(slots: ExportSlots | None, staged_bytes: int) -> Iterator[bool]:
    """`slots.held(staged_bytes)`: yields whether the task may start (False: the pass is over its time). Without
    slots (a caller exporting one task), nothing to wait for."""
    if slots is None:
        yield True
        return
    with slots.held(staged_bytes) as units:
        yield units > 0
