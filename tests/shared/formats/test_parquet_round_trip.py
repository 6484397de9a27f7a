"""A property: any record intake accepts survives typed Parquet, JSON-column Parquet and zstd, read back under the
written rules (docs/formats.md): each value in its column's type or, when the type cannot hold it exactly, as its
JSON text in the companion column; a field repeating a column in the rest; the core columns as intake finds them."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts import sample_data
from shared.formats.exact_json import parse_exact
from shared.formats.flatten import flattened_keys, repeated_column
from shared.formats.parquet_arrow import (
    RECORD_BY_RECORD,
    ArrowRead,
    NotExact,
    PathColumns,
    first_text,
    first_time,
    lines_for_records,
    read_chunk,
)
from shared.formats.parquet_part import ParquetPart
from shared.formats.parquet_schema import SchemaRequest, TypedSchema
from shared.formats.record_fields import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    IDENTITY_CHAIN,
    INSERT_ID_CHAIN,
    NAME_CHAIN,
    PROFILE_IDENTITY_KEYS,
    EventTimeError,
    event_microseconds,
    find_event_name,
    find_insert_id,
    find_profile_identity,
)
from shared.formats.serialization import PartEncoder
from shared.intake.records import RecordsRejected, parse_batch
from tests.shared.parquet_helpers import differences, expected_row, rows_read, table_of

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXPORTED_AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Number literals whose text a double or a 64-bit integer would not keep, beside ordinary ones.
LITERALS = ["0.10000000000000000001", "1.50", "1e400", "-1e-400", "123456789012345678901234567890", "1E+2", "2.0",
            "9223372036854775808", "-9223372036854775809", "18446744073709551615", "0.1", "5e-324", "1e16", "-0"]
KEYS = st.one_of(st.text(st.characters(blacklist_categories=["Cs"]), max_size=5),
                 st.sampled_from(["a.b", "a", "b", "A", "Price", "price", "_identity", "x__json", "", "."]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(LITERALS).map(lambda text: ("literal", text)),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=12)


def as_json_text(value: Any, literals: dict[str, str]) -> Any:
    """The value with each ("literal", text) replaced by a marker string that `line_text` turns into the literal."""
    if isinstance(value, tuple):
        marker = f"@@{uuid.uuid4().hex}@@"
        literals[marker] = value[1]
        return marker
    if isinstance(value, list):
        return [as_json_text(item, literals) for item in value]
    if isinstance(value, dict):
        return {key: as_json_text(item, literals) for key, item in value.items()}
    return value


def line_text(record: dict[str, Any]) -> bytes:
    literals: dict[str, str] = {}
    text = json.dumps(as_json_text(record, literals), ensure_ascii=False, separators=(",", ":"))
    for marker, literal in literals.items():
        text = text.replace(f'"{marker}"', literal)
    return text.encode()


@st.composite
def events(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = draw(st.dictionaries(KEYS, VALUES, max_size=6))
    record[draw(st.sampled_from(EVENT_NAME_KEYS))] = draw(st.text(min_size=1, max_size=6).filter(str.strip))
    moment = draw(st.datetimes(min_value=datetime(1975, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)))
    record[draw(st.sampled_from(EVENT_TIME_KEYS))] = draw(st.sampled_from(
        [int(moment.timestamp()), int(moment.timestamp() * 1000), moment.isoformat()]))
    return line_text(record)


@st.composite
def profiles(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = draw(st.dictionaries(KEYS, VALUES, max_size=6))
    record[draw(st.sampled_from(PROFILE_IDENTITY_KEYS))] = draw(st.text(min_size=1, max_size=6).filter(str.strip))
    return line_text(record)


def accepted_lines(lines: list[bytes], record_type: str) -> list[bytes]:
    """The lines as intake stages them: what it accepted, exactly as the export reads it."""
    try:
        batch = parse_batch(b"\n".join(lines), "ndjson", record_type)  # type: ignore[arg-type]
    except RecordsRejected:
        return []
    return [line for partition in batch.partitions.values() for line in partition.lines]


class MemorySchema:
    """The destination's schema, kept in memory (control storage keeps it in production)."""

    def __init__(self, record_type: str):
        self.schema = TypedSchema(record_type)

    def current(self) -> TypedSchema:
        return self.schema

    def settle(self, request: SchemaRequest) -> TypedSchema:
        self.schema = self.schema.settled(request)
        return self.schema


def written(record_type: str, mode: str, lines: list[bytes], chunk: int,
            via_records: bool = False) -> tuple[Any, dict[str, str]]:
    """The Parquet file of `lines` fed `chunk` at a time, and the column types its schema fixed (typed). Lines
    alone take Arrow's path where it reads them exactly; `via_records` feeds the parsed records too (the path of
    a destination with filters), which are read record by record."""
    schema = MemorySchema(record_type)
    part = ParquetPart(record_type, mode, "zstd", exported_at=EXPORTED_AT,  # type: ignore[arg-type]
                       schema=schema if mode == "typed" else None)
    for start in range(0, len(lines), chunk):
        piece = lines[start:start + chunk]
        part.feed(piece, [parse_exact(line) for line in piece] if via_records else None)
    return table_of(part.close().data), {key: spec.type for key, spec in schema.schema.fields.items()}


def check_core(record_type: str, core: dict[str, Any], record: dict[str, Any]) -> None:
    assert core.get("_identity") == find_profile_identity(record)
    if record_type == "events":
        assert core["_event_name"] == find_event_name(record)
        moment = core["_event_time"]
        assert moment.utcoffset() == timedelta(0)
        assert (moment - EPOCH) // timedelta(microseconds=1) == event_microseconds(record)
        assert core.get("_insert_id") == find_insert_id(record)
    else:
        assert core["_exported_at"] == EXPORTED_AT


def drawn_lines(data: st.DataObject, record_type: str) -> list[bytes]:
    return accepted_lines(data.draw(st.lists(events() if record_type == "events" else profiles(), min_size=1,
                                             max_size=12)), record_type)


@pytest.mark.parametrize("record_type", ["events", "profiles"])
@PROPERTY
@given(data=st.data())
def test_any_accepted_record_survives_typed_parquet_under_the_rules(record_type: str, data: st.DataObject) -> None:
    lines = drawn_lines(data, record_type)
    if not lines:
        return
    table, types = written(record_type, "typed", lines, chunk=data.draw(st.integers(min_value=1, max_value=5)),
                           via_records=data.draw(st.booleans()))
    for row, line in zip(rows_read(table), lines, strict=True):
        record = parse_exact(line)
        check_core(record_type, row.core, record)
        problems = differences(row, expected_row(record, types))
        assert not problems, (line, problems)


@pytest.mark.parametrize("record_type", ["events", "profiles"])
@PROPERTY
@given(data=st.data())
def test_any_accepted_record_survives_json_column_parquet_as_its_text(record_type: str, data: st.DataObject) -> None:
    lines = drawn_lines(data, record_type)
    if not lines:
        return
    table, _ = written(record_type, "json", lines, chunk=4)
    assert table.column_names[-1] == "properties"
    for row, line in zip(table.to_pylist(), lines, strict=True):
        assert row.pop("properties").encode() == line  # the staged text, byte for byte
        check_core(record_type, {key: value for key, value in row.items() if value is not None}, parse_exact(line))


@PROPERTY
@given(lines=st.lists(events(), min_size=1, max_size=12), fmt=st.sampled_from(["jsonl", "csv"]))
def test_any_accepted_record_survives_zstd_with_its_size_and_checksum_in_its_frame(lines: list[bytes],
                                                                                   fmt: str) -> None:
    lines = accepted_lines(lines, "events")
    if not lines or (fmt == "csv" and any(repeated_column(parse_exact(line)) for line in lines)):
        return
    columns = sorted({key for line in lines for key in flattened_keys(parse_exact(line))}) if fmt == "csv" else None
    plain = PartEncoder(fmt, "none", columns)  # type: ignore[arg-type]
    expected = plain.feed(lines).data + plain.close().data
    zstd = PartEncoder(fmt, "zstd", columns)  # type: ignore[arg-type]
    frame = zstd.feed(lines).data + zstd.close().data
    parameters = zstandard.get_frame_parameters(frame)
    assert parameters.content_size == len(expected) and parameters.has_checksum
    assert zstandard.ZstdDecompressor().decompress(frame) == expected
    if fmt == "jsonl":
        assert expected == b"".join(line + b"\n" for line in lines)


@PROPERTY
@given(lines=st.lists(events() | profiles(), min_size=1, max_size=20))
def test_the_core_rules_over_arrow_columns_find_what_they_find_record_by_record(lines: list[bytes]) -> None:
    whole = read_chunk(lines)
    for group in [lines] if whole is not None else [[line] for line in lines]:  # alone, most lines read
        read = whole if whole is not None else read_chunk(group)
        if read is not None:
            _check_core_columns(read, [parse_exact(group[index]) for index in read.rows])


def _check_core_columns(read: ArrowRead, records: list[dict[str, Any]]) -> None:
    columns = PathColumns(read.table)
    doubles = any(pa.types.is_floating(array.type) for chain in (IDENTITY_CHAIN, INSERT_ID_CHAIN)
                  for array in columns.chain(chain))
    assert first_text(columns, NAME_CHAIN, integers=False).to_pylist() == list(map(find_event_name, records))
    for chain, find in ((IDENTITY_CHAIN, find_profile_identity), (INSERT_ID_CHAIN, find_insert_id)):
        try:
            assert first_text(columns, chain, integers=True).to_pylist() == list(map(find, records))
        except NotExact:
            assert doubles  # an integer Arrow may have read as a double: the record-by-record path decides
    try:
        expected = list(map(event_microseconds, records))
    except EventTimeError:
        with pytest.raises(NotExact):
            first_time(columns)
    else:
        assert first_time(columns).to_pylist() == expected


def test_arrow_reads_ordinary_lines_and_leaves_inexact_numbers_and_empty_objects_to_the_record_path() -> None:
    ordinary = [orjson.dumps(record) for record in sample_data.events(30, shapes=("clevertap", "mixpanel", "segment"))]
    odd = [b'{"event":"a","ts":1795167012,"p":1.50}', b'{"event":"a","ts":1795167012,"p":12345678901234567}',
           b'{"event":"a","ts":1795167012,"p":{}}', b'{"event":"a","ts":1795167012,"p":{ }}',
           b'{"event":"a","ts":1795167012,"p":[1e3]}', b'{"event":"a","ts":1795167012,"p":0.00001}']
    lines = ordinary[:10] + odd + ordinary[10:]
    read = read_chunk(lines)
    assert read is not None and read.others == list(range(10, 16)) and len(read.rows) == 30
    assert read_chunk([b'{"event":"a","ts":1,"x":1}', b'{"event":"a","ts":1,"x":"one"}']) is None  # kinds differ
    assert read_chunk([b'{"event":"a","ts":1,"t":"2026-11-20 10:15:00"}']) is None  # Arrow would read a time
    assert read_chunk([b'{"event":"a","ts":1,"l":[{"k":1},{"j":2}]}']) is None  # objects in a list
    assert read_chunk([b'{"event":"a","ts":1,"a.b":1,"a":{"b":2}}']) is None  # two fields, one column
    part = ParquetPart("events", "typed", "zstd", exported_at=EXPORTED_AT, schema=MemorySchema("events"))
    part.feed(lines)
    rows = part.close().data
    assert table_of(rows).num_rows == 36


@PROPERTY
@given(lines=st.lists(events() | profiles(), min_size=1, max_size=20))
def test_the_fast_scans_find_every_line_the_reference_expression_matches(lines: list[bytes]) -> None:
    reference = re.compile(RECORD_BY_RECORD)
    expected = {index for index, line in enumerate(lines) if reference.search(line)}
    assert expected <= set(lines_for_records(lines, b"\n".join(lines)))


def test_an_identity_sent_as_an_integer_beside_decimals_reads_as_the_integer_on_either_path() -> None:
    lines = [b'{"event":"a","ts":1795167012,"id":5,"uuid":7}', b'{"event":"a","ts":1795167012,"id":5.5,"uuid":7.5}']
    part = ParquetPart("events", "typed", "zstd", exported_at=EXPORTED_AT, schema=MemorySchema("events"))
    part.feed(lines)  # Arrow reads id as doubles here: the record-by-record path takes the chunk
    table = table_of(part.close().data)
    assert table.column("_identity").to_pylist() == ["5", None]
    assert table.column("_insert_id").to_pylist() == ["7", None]


def test_arrow_allocates_from_the_c_library_once_parquet_is_written() -> None:
    """mimalloc, the wheel's default, kept each export thread's freed memory: the Parquet pass's peak RSS sat on
    its 300 MB target (`shared.formats.parquet_part`'s doc; measured in `make bench`, not here)."""
    assert ParquetPart is not None and pa.default_memory_pool().backend_name == "system"
