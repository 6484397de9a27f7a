"""Destination records as one export pass (or one queue message) reads them: once, not once per step.

A pass reads a destination's record to sort its batches (does it coalesce, is it paused), then each batch's
attempt needs it again to write; a queue message reads it first to see whether the destination is paused. Each
read is a request to control storage, and for small batches they were 1 to 3 of about 25 per batch. A record
read by the same pass less than REUSE_SECONDS ago is used again; an older one is read again, so a long pass
still sees a destination's change (new credentials, a pause, a deletion) within seconds, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.destinations.record import DestinationRecord
from shared.errors import NotFound

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

REUSE_SECONDS = 5.0


class PassRecords:
    """One pass's destination records, each read at most once every REUSE_SECONDS."""

    def __init__(self, services: Services, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        self._clock = clock
        self._read: dict[str, tuple[float, DestinationRecord | None]] = {}
        self._lock = threading.Lock()

    def get(self, destination_id: str) -> DestinationRecord:
        """The destination's record; raises NotFound as `DestinationService.get_record` does."""
        record = self.find(destination_id)
        if record is None:
            raise NotFound(f"destination '{destination_id}' does not exist")
        return record

    def find(self, destination_id: str) -> DestinationRecord | None:
        """The destination's record, or None when it does not exist."""
        now = self._clock()
        with self._lock:
            kept = self._read.get(destination_id)
        if kept is not None and now - kept[0] < REUSE_SECONDS:
            return kept[1]
        try:
            record: DestinationRecord | None = self._services.destinations.get_record(destination_id)
        except NotFound:
            record = None
        with self._lock:
            self._read[destination_id] = (now, record)
        return record
