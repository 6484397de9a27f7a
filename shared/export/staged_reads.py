"""Reading staged partitions: checked against the SHA-256 their state committed (`checked_reader`), small ones
served from windows of their staged blob (`StagedWindows`); `staged_reader` is both, as the export uses them.

A batch is staged as one blob, each partition a byte range of it (shared.control.batches). Read one range at
a time, a backfill's 300 small partitions cost 300 downloads: as much client CPU as the 300 files they
become. A window is one download of WINDOW_BYTES from where a small partition starts; the partitions after
it in the same blob (staged in key order, written in key order) are then sliced from memory. A few windows
are kept, the least recently used dropped, so memory stays bounded whatever the batch or run size. Ranges
larger than a window, and whole blobs (states staged before byte ranges), stream as before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from shared.control.batch_state import StagedPartition
from shared.errors import DestinationProblem
from shared.logging_setup import log_event

WINDOW_BYTES = 4 * 1024 * 1024
MAX_WINDOWS = 8  # 32 MiB at most: a run's writers read up to FILE_CONCURRENCY partitions at once

Read = Callable[[str, int | None, int | None], Iterator[bytes]]
log = logging.getLogger(__name__)


def staged_reader(stream: Read) -> Callable[[StagedPartition], Iterator[bytes]]:
    """How an export reads its staged partitions: from shared windows, each checked."""
    return checked_reader(StagedWindows(stream).read)


def checked_reader(
    read: Read,
) -> Callable[[StagedPartition], Iterator[bytes]]:
    """`read` (name, offset, length) of one staged partition: its byte range of the batch's staged blob, or
    the whole blob of a batch staged before issue 13, checking that it holds the bytes the state committed
    (the SHA-256 intake recorded). A mismatch ends the stream with a failure before the partition's last part
    is committed."""

    def read_checked(partition: StagedPartition) -> Iterator[bytes]:
        digest = hashlib.sha256()
        for chunk in read(partition.blob, *partition.byte_range()):
            digest.update(chunk)
            yield chunk
        if partition.sha256 is not None and digest.hexdigest() != partition.sha256:
            log_event(log, "staged records differ from those the batch committed", logging.ERROR,
                      blob=partition.blob, partition=partition.key, offset=partition.offset)
            raise DestinationProblem(
                "the batch's staged records in control storage are not the ones it was accepted with, so it was "
                "not exported; post the records again", code="staged_data_changed")
    return read_checked



class StagedWindows:
    """`read(name, offset, length)` as `ControlStore.stream` does it, small ranges from shared windows. Writers
    that ask for ranges of a window being downloaded wait for that download rather than start their own."""

    def __init__(self, stream: Read, *, window_bytes: int = WINDOW_BYTES, max_windows: int = MAX_WINDOWS):
        self._stream = stream
        self._window_bytes = window_bytes
        self._max_windows = max_windows
        self._windows: OrderedDict[tuple[str, int], Future[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, name: str, offset: int | None, length: int | None) -> Iterator[bytes]:
        if offset is None or length is None or length > self._window_bytes:
            yield from self._stream(name, offset, length)
            return
        start, data = self._window(name, offset, length)
        if offset + length > start + len(data):  # the blob is shorter than the range: read it, the check refuses
            yield from self._stream(name, offset, length)
            return
        yield data[offset - start : offset - start + length]

    def _window(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        """The window holding the range: cached, being downloaded (waited for), or downloaded now."""
        with self._lock:
            found = self._find(name, offset, length)
            if found is None:
                window: Future[bytes] = Future()
                window.set_running_or_notify_cancel()
                self._windows[(name, offset)] = window
                while len(self._windows) > self._max_windows:
                    self._windows.popitem(last=False)
        if found is not None:
            start, window = found
            return start, window.result()
        try:
            window.set_result(b"".join(self._stream(name, offset, self._window_bytes)))  # cut at the blob's end
        except BaseException as exc:
            window.set_exception(exc)  # those waiting for it get the error too
            with self._lock:
                self._windows.pop((name, offset), None)
        return offset, window.result()

    def _find(self, name: str, offset: int, length: int) -> tuple[int, Future[bytes]] | None:
        for (blob, start), window in reversed(self._windows.items()):
            if blob == name and start <= offset and offset + length <= start + self._window_bytes:
                self._windows.move_to_end((blob, start))
                return start, window
        return None
