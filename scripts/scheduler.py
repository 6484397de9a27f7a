"""The timer trigger for `make serve`: run a job on an NCRONTAB schedule in a background thread.

Like the Functions host's timer (a singleton, use_monitor), one run at a time: when a run outlasts
the interval, the occurrences it overlapped are skipped, not queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from scripts.ncrontab import Schedule

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class ScheduledJob:
    def __init__(self, schedule: Schedule, job: Callable[[], object], *, name: str = "export-timer",
                 clock: Callable[[], datetime] = _now):
        self.schedule = schedule
        self.job = job
        self.clock = clock
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop waiting for the next occurrence; a run in progress is allowed to finish (up to `timeout`)."""
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            due = self.schedule.next_after(now)
            if self._stop.wait(max(0.0, (due - now).total_seconds())):
                return
            try:
                self.job()
            except Exception as exc:  # the timer must keep running whatever one run does
                log.error("scheduled run failed: %s: %s", type(exc).__name__, exc)
            finally:
                self.runs += 1
