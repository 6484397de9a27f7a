"""The Parquet fast path's pure parts, by cases: which lines the scans send record by record, and event times
converted a distinct value at a time, exactly as one at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shared.formats.exact_json import parse_exact
from shared.formats.parquet_arrow import RECORD_BY_RECORD, lines_for_records
from shared.formats.parquet_part import ParquetPart
from shared.formats.record_fields import (
    EventTimeError,
    epoch_microseconds,
    epoch_microseconds_each,
    first_in_columns,
    identity_text,
    name_text,
    present,
)
from tests.shared.formats.test_parquet_round_trip import MemorySchema
from tests.shared.parquet_helpers import table_of


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


# Each case: chunks of one part whose fields change kind from one chunk to the next.
LATER_CHUNKS_DIFFER = {
    "an integer field then doubles": [[b'{"event":"a","ts":1795167012,"n":1}'],
                                      [b'{"event":"a","ts":1795167012,"n":1.5}']],
    "doubles then integers": [[b'{"event":"a","ts":1795167012,"n":1.5}'], [b'{"event":"a","ts":1795167012,"n":2}']],
    "a list of integers then of doubles": [[b'{"event":"a","ts":1795167012,"l":[1,2]}'],
                                           [b'{"event":"a","ts":1795167012,"l":[1.5]}']],
    "an object then a dotted key": [[b'{"event":"a","ts":1795167012,"a":{"b":"x"}}'],
                                    [b'{"event":"a","ts":1795167012,"a.b":"y"}']],
    "a string then a number": [[b'{"event":"a","ts":1795167012,"s":"x"}'], [b'{"event":"a","ts":1795167012,"s":3}']],
    "a date as text": [[b'{"event":"a","ts":1795167012,"d":"x"}'], [b'{"event":"a","ts":1795167012,"d":"2026-11-20"}']],
    "a field left out, then back": [[b'{"event":"a","ts":1795167012,"o":{"p":true}}'],
                                    [b'{"event":"a","ts":1795167012}'],
                                    [b'{"event":"a","ts":1795167012,"o":{"p":false,"q":1}}']],
}


@pytest.mark.parametrize("chunks", LATER_CHUNKS_DIFFER.values(), ids=LATER_CHUNKS_DIFFER.keys())
def test_chunks_whose_fields_change_kind_land_as_record_by_record(chunks: list[list[bytes]]) -> None:
    fast = _part()
    for chunk in chunks:
        fast.feed(chunk * 3)
    slow = _part()
    for chunk in chunks:
        slow.feed(chunk * 3, [parse_exact(line) for line in chunk * 3])  # parsed records: record by record
    assert table_of(fast.close().data).equals(table_of(slow.close().data))


def _part() -> ParquetPart:
    return ParquetPart("events", "typed", "zstd", exported_at=datetime(2026, 12, 1, tzinfo=UTC),
                       schema=MemorySchema("events"))


@pytest.mark.parametrize(("columns", "names", "identities"), [
    ([["a", None, "b"], ["x", "y", "z"]], ["a", "y", "b"], ["a", "y", "b"]),
    ([["a", "", " \t"], ["x", "y", "z"]], ["a", "y", "z"], ["a", "y", "z"]),  # blank names are no names
    ([[7, None, True], ["x", "y", "z"]], ["x", "y", "z"], ["7", "y", "z"]),  # an integer is an identity, not a name
    ([None, [None, None, "c"], [None, " ", None]], [None, None, "c"], [None, None, "c"]),
])
def test_the_first_value_a_chain_takes_whatever_its_columns_hold(columns: list[list[object] | None],
                                                                  names: list[str | None],
                                                                  identities: list[str | None]) -> None:
    assert first_in_columns(3, columns, name_text) == names
    assert first_in_columns(3, columns, identity_text) == identities
    assert first_in_columns(3, columns, present) == [next((column[index] for column in columns if column is not None
                                                            and column[index] is not None), None) for index in range(3)]
