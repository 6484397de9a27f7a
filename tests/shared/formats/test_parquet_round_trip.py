"""A property: any record intake accepts survives typed Parquet, JSON-column Parquet and zstd, read back under the
written rules (docs/formats.md): each value in its column's type or, when the type cannot hold it exactly, as its
JSON text in the companion column; a field repeating a column in the rest; the core columns as intake finds them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.formats.exact_json import parse_exact
from shared.formats.flatten import flattened_keys, repeated_column
from shared.formats.parquet_part import ParquetPart
from shared.formats.parquet_schema import SchemaRequest, TypedSchema
from shared.formats.record_fields import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    PROFILE_IDENTITY_KEYS,
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


def written(record_type: str, mode: str, lines: list[bytes], chunk: int) -> tuple[Any, dict[str, str]]:
    """The Parquet file of `lines` fed `chunk` at a time, and the column types its schema fixed (typed)."""
    schema = MemorySchema(record_type)
    part = ParquetPart(record_type, mode, "zstd", exported_at=EXPORTED_AT,  # type: ignore[arg-type]
                       schema=schema if mode == "typed" else None)
    for start in range(0, len(lines), chunk):
        part.feed(lines[start:start + chunk])
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
    table, types = written(record_type, "typed", lines, chunk=data.draw(st.integers(min_value=1, max_value=5)))
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
