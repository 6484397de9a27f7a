"""How much export work a pass does at once: two lanes of threads, by the size of what a task staged.

  heavy lane   EXPORT_CONCURRENCY threads: any task (a small one when no large one waits), as a pass always ran
               them. Memory bounds these (a 50,000-event batch's export holds tens of MB, a Parquet one hundreds).
  light lane   LIGHT_TASKS more threads: only tasks whose staged records are under LIGHT_TASK_BYTES all told.
               A small batch's export is a dozen round trips to storage that wait, not work: with two at a time
               a pass of small batches left the CPU mostly idle.

A task's size is known before it is claimed: its batches' open markers say what they staged
(`shared.control.batch_index`), read with the listing that found them due. A task of unknown size (a marker
written before markers said, or a queue message's batch) takes the heavy lane. Tasks run oldest first within
their lane, and a task is handed to a thread only once one of its lane is free, so no lease is taken early and
held while waiting. A thread stays in its lane: a light thread never exports a large batch, so what it keeps
allocated between tasks stays small (glibc keeps each thread's peak in its arena).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

LIGHT_TASK_BYTES = 1024 * 1024  # about 3,000 Mixpanel-shaped events staged: a few MB at most while exported
LIGHT_TASKS = 8


@dataclass(frozen=True)
class Task:
    """One unit of a pass: a batch on its own, or a destination's batches coalesced into runs. `staged_bytes`:
    what its batches staged all told, None when a batch's marker did not say."""

    destination_id: str
    batch_ids: tuple[str, ...]
    run: Callable[[], dict[str, str]]
    staged_bytes: int | None = None

    @property
    def light(self) -> bool:
        return self.staged_bytes is not None and self.staged_bytes < LIGHT_TASK_BYTES


def task_bytes(sizes: Iterable[int | None]) -> int | None:
    """A task's staged bytes from its batches' (None if any is unknown)."""
    total = 0
    for size in sizes:
        if size is None:
            return None
        total += size
    return total


def run_in_lanes(tasks: Sequence[Task], heavy_threads: int, *, stop_at: float,
                 clock: Callable[[], float] = time.monotonic) -> tuple[dict[str, str], list[Task]]:
    """Run the tasks in their lanes; return their outcomes and the tasks never started (the pass stops taking new
    work at `stop_at`, a `clock` reading)."""
    waiting = {light: deque(t for t in tasks if t.light == light) for light in (False, True)}
    threads = {False: max(1, heavy_threads), True: LIGHT_TASKS if waiting[True] else 0}
    outcomes: dict[str, str] = {}
    running: dict[Future[dict[str, str]], bool] = {}
    pools = {light: ThreadPoolExecutor(threads[light], thread_name_prefix="export-light" if light else "export")
             for light in (True, False) if threads[light]}  # the light lane first: the heavy one takes what is left
    try:
        while (waiting[False] or waiting[True]) and clock() <= stop_at:
            for light, pool in pools.items():
                while clock() <= stop_at and list(running.values()).count(light) < threads[light]:
                    # a heavy thread with no large task waiting takes a small one
                    queue = waiting[light] or (waiting[True] if not light else None)
                    if not queue:
                        break
                    running[pool.submit(queue.popleft().run)] = light
            _collect(running, outcomes, wait(running, return_when=FIRST_COMPLETED).done)
        _collect(running, outcomes, list(running))  # what is in hand finishes
    finally:
        for pool in pools.values():
            pool.shutdown()
    return outcomes, [*waiting[False], *waiting[True]]


def _collect(running: dict[Future[dict[str, str]], bool], outcomes: dict[str, str],
             done: Iterable[Future[dict[str, str]]]) -> None:
    for future in done:
        running.pop(future)
        outcomes.update(future.result())  # re-raises what ended a worker (only a BaseException can)
