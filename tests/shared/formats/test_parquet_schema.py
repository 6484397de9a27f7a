"""Typed Parquet's written rules, as tables: the type a field's first values fix, what each type holds exactly,
column names distinct without regard to case, companions, and the schema's bounds."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.formats.exact_json import JsonNumber, parse_exact
from shared.formats.parquet_columns import chunk_columns
from shared.formats.parquet_part import ROW_GROUP_ROWS, ParquetPart
from shared.formats.parquet_schema import (
    MAX_FIELD_NAME,
    FieldColumn,
    SchemaRequest,
    TypedSchema,
    decide_type,
)
from shared.formats.parquet_values import exact_double, typed_column
from tests.shared.formats.test_parquet_round_trip import MemorySchema

EXPORTED_AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2, None], "int64"),
    ([1, 2.5], "float64"),
    ([2.5, 1], "float64"),
    ([JsonNumber("1e400"), 3], "float64"),
    ([2**70], "int64"),  # beyond 64 bits: int64, the value itself in the companion
    (["a", 1], "string"),  # kinds that disagree: string when one is a string, whatever the order
    ([1, "a"], "string"),
    ([True, 1], "json"),  # else json, which holds any value as its text
    ([[1], "a"], "string"),
    ([[1], True, None], "json"),
    ([True, False], "bool"),
    ([{}, None], "json"),
    ([None, None], None),  # nothing fixed until a value comes
    ([], None),
])
def test_the_first_values_seen_fix_the_type(values: list[Any], expected: str | None) -> None:
    assert decide_type(values) == expected


@pytest.mark.parametrize(("value", "held"), [
    (0.1, 0.1), (5, 5.0), (2**53, float(2**53)), (2**53 + 1, None), (JsonNumber("1.50"), 1.5),
    (JsonNumber("0.10000000000000000001"), None), (JsonNumber("1e400"), None), (JsonNumber("-1e-400"), None),
    (JsonNumber("1E+2"), 100.0), ("1.5", None), (True, None),
])
def test_a_double_holds_a_number_only_when_it_is_exactly_the_number_sent(value: Any, held: float | None) -> None:
    assert exact_double(value) == held


@pytest.mark.parametrize(("values", "column_type", "main", "companion"), [
    (["a", None, "b"], "string", ["a", None, "b"], None),
    (["a", 1, [1], {}, True], "string", ["a", None, None, None, None], [None, "1", "[1]", "{}", "true"]),
    ([1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1], "int64", [1, 2**63 - 1, None, -(2**63), None],
     [None, None, "9223372036854775808", None, "-9223372036854775809"]),
    ([1, 2.5, JsonNumber("1e400"), "x"], "float64", [1.0, 2.5, None, None], [None, None, "1e400", '"x"']),
    ([True, False, 0], "bool", [True, False, None], [None, None, "0"]),
    ([[1, JsonNumber("1.50")], {}, "s", 2**70], "json", ['[1,1.50]', "{}", '"s"', "1180591620717411303424"], None),
])
def test_what_a_type_cannot_hold_goes_to_the_companion_as_json_text(
        values: list[Any], column_type: Any, main: list[Any], companion: list[Any] | None) -> None:
    array, texts = typed_column(values, column_type)
    assert array.to_pylist() == main
    assert texts == companion


def test_names_are_distinct_without_regard_to_case_and_core_names_are_reserved() -> None:
    schema = TypedSchema("events").settled(SchemaRequest(new_fields={
        "Amount": "int64", "amount": "float64", "AMOUNT": "string", "_identity": "string", "_EVENT_NAME": "string",
        "": "int64", "amount__2": "bool"}))
    columns = {key: spec.column for key, spec in schema.fields.items()}
    assert columns == {"AMOUNT": "AMOUNT", "Amount": "Amount__2", "amount": "amount__3", "_identity": "_identity__2",
                       "_EVENT_NAME": "_EVENT_NAME__2", "": "_empty", "amount__2": "amount__2__2"}
    assert len({name.lower() for name in columns.values()}) == len(columns)
    again = schema.settled(SchemaRequest(new_fields={"amount": "string", "new": "bool"},
                                         companions=frozenset({"amount"})))
    assert again.fields["amount"] == FieldColumn("amount__3", "float64", "amount__3__json")  # its type stays
    assert again.fields["new"] == FieldColumn("new", "bool")


def test_a_field_without_room_keeps_its_values_in_the_rest() -> None:
    long_key = "k" * (MAX_FIELD_NAME + 1)
    schema = TypedSchema("events").settled(SchemaRequest(new_fields={long_key: "int64", "ok": "int64"}))
    assert list(schema.fields) == ["ok"]
    part = ParquetPart("events", "typed", "zstd", exported_at=EXPORTED_AT, schema=MemorySchema("events"))
    part.feed([orjson.dumps({"event": "e", "ts": 1795167012, long_key: 7, "a.b": 1, "a": {"b": 2}})])
    table = pq.read_table(io.BytesIO(part.close().data))
    assert table.column("_rest_json").to_pylist() == [orjson.dumps([["a.b", 2], [long_key, 7]]).decode()]


def test_records_line_up_in_columns_by_shape_or_record_by_record_with_the_same_values() -> None:
    records = [parse_exact(orjson.dumps(r)) for r in (
        {"a": {"b": 1, "c": [1]}, "d": "x"}, {"a": {"b": 2, "c": []}, "d": "y"}, {"a": {}, "d": None},
        {"a": {"b": 3}, "d": "z"}, {"a": 5})]
    for group in (records, records * 4):  # row by row, then a column at a time (groups of 8 or more)
        columns, rest = chunk_columns(group)
        assert columns["a.b"] == [1, 2, None, 3, None] * (len(group) // 5)
        assert columns["a"] == [None, None, {}, None, 5] * (len(group) // 5)
        assert rest == [None] * len(group)


def test_a_part_writes_row_groups_of_the_documented_size_with_the_core_columns_first() -> None:
    part = ParquetPart("profiles", "json", "snappy", exported_at=EXPORTED_AT)
    lines = [orjson.dumps({"identity": f"u{i}"}) for i in range(ROW_GROUP_ROWS + 5)]
    for start in range(0, len(lines), 10_000):
        part.feed(lines[start:start + 10_000])
    parquet = pq.ParquetFile(io.BytesIO(part.close().data))
    assert parquet.metadata.num_row_groups == 2 and parquet.metadata.row_group(0).num_rows == ROW_GROUP_ROWS
    assert parquet.schema_arrow.names == ["_identity", "_exported_at", "properties"]
    assert parquet.schema_arrow.field("_exported_at").type == pa.timestamp("us", tz="UTC")
    assert parquet.metadata.row_group(0).column(0).compression == "SNAPPY"
