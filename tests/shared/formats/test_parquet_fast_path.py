"""The Parquet fast path's pure parts, by cases: which lines the scans send record by record, and event times
converted a distinct value at a time, exactly as one at a time."""

from __future__ import annotations

import re

import pytest

from shared.formats.parquet_arrow import RECORD_BY_RECORD, lines_for_records
from shared.formats.record_fields import EventTimeError, epoch_microseconds, epoch_microseconds_each


@pytest.mark.parametrize(("line", "by_records"), [
    (b'{"a":1e5}', True),
    (b'{"a": -1.5E+10 ,"b":1}', True),
    (b'{"a":[2,3e-7]}', True),
    (b'{"a":12345678901234567}', True),
    (b'{"a":\t-1234567890.123456}', True),
    (b'{"a":1.50}', True),
    (b'{"a":0.00001}', True),
    (b'{"a":{}}', True),
    (b'{"a":{ }}', True),
    (b'{"$insert_id":"000081e81600a35a099950d8","b":1.5}', False),  # a hexadecimal id is text, not a number
    (b'{"anonymousId":"anon-12e4","n":123456789012345}', False),  # 15 digits: exact as a double
    (b'{"a":"1e5"}', False),
    (b'{"a":1.05,"b":[1,2.5]}', False),
])
def test_the_scans_send_a_line_record_by_record_exactly_when_arrow_could_alter_it(line: bytes,
                                                                                   by_records: bool) -> None:
    assert bool(re.search(RECORD_BY_RECORD, line)) == by_records
    lines = [b'{"event":"x","ts":1795167012}', line]
    assert lines_for_records(lines, b"\n".join(lines)) == ([1] if by_records else [])


@pytest.mark.parametrize("values", [
    [1795167012] * 5 + [1795167013] * 5,  # repeated: one conversion each
    ["2026-11-20T09:00:00.000Z"] * 4 + [1795167012000] * 4,  # ints and strings share a lookup
    [1795167012, 1795167012.0, 1795167012.5, 1795167012],  # ints and floats do not
    ["2026-11-20T09:00:00Z", "2026-11-20T09:00:01Z"],  # distinct: one at a time
])
def test_times_converted_once_a_value_equal_those_converted_one_at_a_time(values: list[object]) -> None:
    assert epoch_microseconds_each(values) == [epoch_microseconds(value) for value in values]


@pytest.mark.parametrize("values", [
    [1795167012, 1795167012, True, True],  # True equals 1, but is no time
    [1795167012, 1795167012, [1], [1]],  # a list cannot be looked up
    ["2026-11-20T09:00:00Z"] * 3 + [None],
])
def test_a_value_that_is_no_time_is_refused_as_one_at_a_time(values: list[object]) -> None:
    with pytest.raises(EventTimeError):
        epoch_microseconds_each(values)
