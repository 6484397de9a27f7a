"""Small staged partitions are read from shared windows of their staged blob (issue 13, item 1): a backfill's
hundreds of ranges cost a few downloads from control storage, not one each, with the same bytes."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.control.store import ControlStore
from shared.export.staged_reads import StagedWindows
from shared.services import Services


class CountedStream:
    """The real ControlStore.stream, its downloads counted."""

    def __init__(self, control: ControlStore):
        self.control = control
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, name: str, offset: int | None, length: int | None) -> Iterator[bytes]:
        with self._lock:
            self.calls += 1
        return self.control.stream(name, offset, length)


@pytest.fixture
def staged(services: Services) -> tuple[ControlStore, str, bytes]:
    data = os.urandom(3 * 1024 * 1024 + 12_345)
    name = f"staged/{uuid.uuid4().hex}/records.jsonl"
    services.control.put_bytes(name, data)
    return services.control, name, data


def test_hundreds_of_small_ranges_read_from_eight_threads_cost_one_download(
    staged: tuple[ControlStore, str, bytes]
) -> None:
    control, name, data = staged
    stream = CountedStream(control)
    windows = StagedWindows(stream, window_bytes=4 * 1024 * 1024)
    ranges = [(offset, 9_000) for offset in range(0, len(data) - 9_000, 9_000)]

    def read(entry: tuple[int, int]) -> bytes:
        return b"".join(windows.read(name, *entry))

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(read, ranges))
    assert got == [data[offset : offset + length] for offset, length in ranges]
    assert len(ranges) == 350 and stream.calls == 1


def test_a_range_past_the_blobs_end_or_larger_than_a_window_is_streamed_as_it_is(
    staged: tuple[ControlStore, str, bytes]
) -> None:
    control, name, data = staged
    stream = CountedStream(control)
    windows = StagedWindows(stream, window_bytes=1024 * 1024, max_windows=2)
    assert b"".join(windows.read(name, len(data) - 100, 500)) == data[-100:]  # cut short: the caller's check refuses
    assert b"".join(windows.read(name, 10, 2 * 1024 * 1024)) == data[10 : 10 + 2 * 1024 * 1024]
    assert b"".join(windows.read(name, None, None)) == data  # a whole blob, as staged before byte ranges
    before = stream.calls
    for offset in (0, 1024 * 1024, 2 * 1024 * 1024, 0):  # two windows kept: the first was dropped, read again
        assert b"".join(windows.read(name, offset + 5, 100)) == data[offset + 5 : offset + 105]
    assert stream.calls - before == 4
