"""The Parquet fast path's pure parts, by cases: which lines the scans send record by record, and the core columns
Arrow's columns give, exactly as the record-by-record rules find them."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.formats.exact_json import parse_exact
from shared.formats.parquet_arrow import (
    RECORD_BY_RECORD,
    NotExact,
    PathColumns,
    first_text,
    first_time,
    lines_for_records,
    read_chunk,
)
from shared.formats.parquet_part import ParquetPart
from shared.formats.record_fields import (
    BLANK,
    IDENTITY_CHAIN,
    NAME_CHAIN,
    event_microseconds,
    find_event_name,
    find_profile_identity,
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


TIMES = {
    "repeated: one conversion each": [b'{"ts":1795167012}'] * 3 + [b'{"ts":1795167013}'] * 3,
    "fields of different kinds": [b'{"timestamp":"2026-11-20T09:00:00.000Z"}', b'{"ts":1795167012000}',
                                  b'{"properties":{"time":1795167012.5}}', b'{"ts":20261120090000}'],
    "a later field is never read": [b'{"timestamp":"2026-11-20T09:00:00.000Z","ts":"no time"}', b'{"ts":"1795167012"}'],
    "integers and decimals of one field": [b'{"ts":1795167012}', b'{"ts":1795167012.5}', b'{"ts":1795167012}'],
}


@pytest.mark.parametrize("lines", TIMES.values(), ids=TIMES.keys())
def test_times_over_arrow_columns_are_those_found_record_by_record(lines: list[bytes]) -> None:
    read = read_chunk(lines)
    assert read is not None
    assert first_time(PathColumns(read.table)).to_pylist() == [event_microseconds(parse_exact(line)) for line in lines]


@pytest.mark.parametrize("lines", [
    [b'{"timestamp":true}', b'{"ts":1795167012}'],  # true is no time
    [b'{"ts":"1795167012"}', b'{"ts":"2026-13-01"}'],
    [b'{"ts":1795167012}', b'{"event":"no time"}'],
    [b'{"ts":[1795167012]}'],
])
def test_a_value_that_is_no_time_leaves_the_chunk_to_the_record_path(lines: list[bytes]) -> None:
    read = read_chunk(lines)
    assert read is not None
    with pytest.raises(NotExact):
        first_time(PathColumns(read.table))


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


SPACES = "".join(chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace())


def test_blank_is_what_isspace_says_at_every_code_point() -> None:
    others = "".join(chr(code) for code in range(sys.maxunicode + 1)
                     if not chr(code).isspace() and not 0xD800 <= code < 0xE000)
    assert re.fullmatch(BLANK, SPACES) and re.fullmatch(BLANK, "")
    assert pc.match_substring_regex(pa.array([SPACES, "", *SPACES]), BLANK).to_pylist() == [True] * (len(SPACES) + 2)
    assert not any(pc.match_substring_regex(pa.array(list(others)), BLANK).to_pylist())


@pytest.mark.parametrize(("lines", "names", "identities"), [
    ([b'{"event":"a","userId":"x"}', b'{"name":"y","user_id":"y"}', b'{"event":"b","identity":"b"}'],
     ["a", "y", "b"], ["x", "y", "b"]),
    ([b'{"event":"a","identity":"a","id":"x"}', b'{"event":"","identity":"","id":"y"}',
      b'{"event":" \\t","identity":"\\u3000","id":"z","name":"z"}'], ["a", None, "z"], ["a", "y", "z"]),
    ([b'{"event":7,"identity":7,"id":"x"}', b'{"name":"y","id":"y"}', b'{"event":8,"identity":null,"id":"z"}'],
     [None, "y", None], ["7", "y", "z"]),  # an integer is an identity, not a name
    ([b'{"event":true,"type":"t"}', b'{"event":false,"name":"n"}'], [None, "n"], [None, None]),
    ([b'{"properties":{"distinct_id":-3}}', b'{"properties":{"distinct_id":12}}', b'{"properties":null}'],
     [None, None, None], ["-3", "12", None]),
    ([orjson.dumps({"event": space, "identity": space * 2}) for space in SPACES],
     [None] * len(SPACES), [None] * len(SPACES)),  # whitespace, as str.isspace says
])
def test_the_first_value_a_chain_takes_over_arrow_columns(lines: list[bytes], names: list[str | None],
                                                          identities: list[str | None]) -> None:
    read = read_chunk(lines)
    assert read is not None
    assert first_text(PathColumns(read.table), NAME_CHAIN, integers=False).to_pylist() == names
    assert first_text(PathColumns(read.table), IDENTITY_CHAIN, integers=True).to_pylist() == identities
    records = [parse_exact(line) for line in lines]
    assert names == list(map(find_event_name, records)) and identities == list(map(find_profile_identity, records))
