"""One flattening rule: how a record's keys become CSV column names, and when two collide. Intake's columns and
every path of the CSV encoder (row by row, learned row shapes, a column at a time) name columns by it."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.formats.csv_cells import flatten_record, quote_row
from shared.formats.csv_columns import MIN_COLUMNAR_GROUP, columnar_rows
from shared.formats.csv_shapes import RowShape
from shared.formats.flatten import flattened_keys, may_repeat_a_column, nested_prefix, repeated_column


def nested(depth: int) -> dict[str, Any]:
    record: dict[str, Any] = {"leaf": 1}
    for level in range(depth - 1):
        record = {f"k{level}": record}
    return record


FLATTENING: list[tuple[dict[str, Any], list[str]]] = [
    ({"properties": {"a": {"b": 1}}}, ["properties.a.b"]),
    ({"a": {}, "b": [], "c": None, "d": False, "e": 1.5, "f": "s"}, ["a", "b", "c", "d", "e", "f"]),
    ({"items": [{"x": 1}], "o": {"p": {"q": {}}, "r": 2}}, ["items", "o.p.q", "o.r"]),
    ({"a.b": 1, "a": {"b": 2}}, ["a.b", "a.b"]),
    ({}, []),
]


@pytest.mark.parametrize(("record", "columns"), FLATTENING)
def test_flattened_keys_rules(record: dict[str, Any], columns: list[str]) -> None:
    assert list(flattened_keys(record)) == columns
    assert list(flattened_keys(record, "x.")) == [f"x.{column}" for column in columns]


def test_flattened_keys_handles_any_depth() -> None:
    (column,) = flattened_keys(nested(5000))
    assert column.count(".") == 4999


def test_a_nested_object_prefixes_its_members_with_its_column_and_a_dot() -> None:
    assert nested_prefix("", "properties") == "properties."
    assert nested_prefix("properties.", "a") == "properties.a."


COLLISIONS: list[tuple[dict[str, Any], str | None]] = [
    ({"a.b": 1, "a": {"b": 2}}, "a.b"),
    ({"a": {"b": 2}, "a.b": 1}, "a.b"),
    ({"p": {"x.y": {}, "x": {"y": {}}}}, "p.x.y"),
    ({"a.b": 1, "a": {"c": 2}}, None),  # a dot in a key, but no two fields meet
    ({"a": {"b": 1}, "b": {"a": 1}}, None),
    ({"a.b": [1], "a": [{"b": 2}]}, None),  # a list is one column, whatever it holds
    ({}, None),
]


@pytest.mark.parametrize(("record", "column"), COLLISIONS)
def test_repeated_column_names_the_first_column_two_fields_share(record: dict[str, Any], column: str | None) -> None:
    assert repeated_column(record) == column
    if column is not None:
        assert may_repeat_a_column(record)


def test_records_without_a_dot_in_a_key_are_cleared_without_a_walk_of_their_columns() -> None:
    assert not may_repeat_a_column({"a": {"b": {"c": 1}}, "d": [{"e.f": 1}]})
    assert may_repeat_a_column({"a": {"b": {"c.d": 1}}})


# --- property: every walk names columns by the rule --------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "a.b", "b.c", ".", "", "é"])  # dots in keys, so that names can collide
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.lists(st.one_of(st.integers(0, 9), st.text(max_size=2)), max_size=2),
)
VALUES = st.recursive(LEAVES, lambda children: st.dictionaries(KEYS, children, max_size=3), max_leaves=8)
RECORDS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=4)


def generic_row(record: dict[str, Any], columns: list[str]) -> str:
    """The row the general path writes: ``flatten_record``'s cells in the header's order."""
    cells = flatten_record(record)
    return quote_row([cells.get(column, "") for column in columns])


@settings(max_examples=300, deadline=None)
@given(record=RECORDS)
def test_the_cells_of_a_record_are_named_by_the_rule(record: dict[str, Any]) -> None:
    names = list(flattened_keys(record))
    column = repeated_column(record)
    assert column is None or may_repeat_a_column(record)
    if column is None:
        assert list(flatten_record(record)) == names
    else:
        assert names.count(column) > 1
        with pytest.raises(ValueError, match=re.escape(repr(column))):
            flatten_record(record)


@settings(max_examples=300, deadline=None)
@given(record=RECORDS)
def test_the_column_at_a_time_path_names_columns_by_the_rule(record: dict[str, Any]) -> None:
    columns = sorted(set(flattened_keys(record)))
    group = [copy.deepcopy(record) for _ in range(MIN_COLUMNAR_GROUP)]
    rows = columnar_rows(group, columns, frozenset(columns))
    if repeated_column(record) is not None:
        assert rows is None  # row by row, which names the collision
    elif len(columns) >= 2:  # the encoder writes a single column row by row
        assert rows is not None, "the column path did not take a group whose columns are all in the header"
        assert list(rows) == [generic_row(record, columns)] * len(group)


@settings(max_examples=300, deadline=None)
@given(record=RECORDS)
def test_a_learned_row_shape_names_columns_by_the_rule(record: dict[str, Any]) -> None:
    columns = sorted(set(flattened_keys(record)))
    shape = RowShape.of(record, columns)
    if repeated_column(record) is not None:
        assert shape is None
    elif len(columns) >= 2:
        assert shape is not None, "no shape learned for a record whose columns are all in the header"
        assert shape.row(record) == generic_row(record, columns)
