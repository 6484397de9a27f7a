"""CSV rows written a column at a time (groups of records with the same top-level keys) are exactly the
rows the csv module writes for the flattened records, and anything irregular goes row by row."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.formats.csv_cells import flatten_record
from shared.formats.csv_encoding import CsvEncoder
from shared.formats.exact_json import RecordError, parse_exact
from tests.shared.formats.test_serialization import SAME_TYPE, SCALARS, csv_module_text, dumps_exact

GROUP = 12  # more than the smallest group written a column at a time


def encode(records: list[dict[str, Any]], columns: list[str] | None = None) -> tuple[bytes, bytes]:
    """(what the encoder writes, what the csv module writes) for these records."""
    lines = [dumps_exact(record) for record in records]
    parsed = [parse_exact(line) for line in lines]
    columns = columns or sorted({column for record in parsed for column in flatten_record(record)})
    text, count = CsvEncoder(columns).encode(lines)
    assert count == len(records)
    return text, csv_module_text(parsed, columns)


CASES = {
    "strings needing quotes": [{"a": f"x,{i}", "b": f'say "{i}"', "c": f"line\n{i}", "d": "\r"} for i in range(GROUP)],
    "numbers and booleans": [{"i": i, "f": i / 3, "b": i % 2 == 0, "n": None, "big": 2**60 + i} for i in range(GROUP)],
    "integers beyond 64 bits": [{"a": 2**70 + i, "b": "x"} for i in range(GROUP)],
    "floats kept as sent": [{"a": 1.5 if i % 2 else 1e-7, "b": 12345678.9} for i in range(GROUP)],
    "mixed types in a column": [{"a": [None, 1, "s", True, 2.5, [1], {}][i % 7], "b": 1} for i in range(GROUP)],
    "lists and empty objects": [{"a": [i, "x,y", {"k": '"'}], "b": {}, "c": []} for i in range(GROUP)],
    "nested objects": [{"p": {"q": {"r": i, "s": "t"}, "u": None}, "v": "w"} for i in range(GROUP)],
    "nested keys in another order": [{"p": {"x": i, "y": 2} if i % 2 else {"y": 2, "x": i}, "z": 0}
                                     for i in range(GROUP)],
    "nested keys that differ": [{"p": {"x": 1} if i % 2 else {"y": 1}, "z": 0} for i in range(GROUP)],
    "nested sizes that differ": [{"p": {"x": 1, "y": 2} if i % 3 else {"x": 1}, "z": 0} for i in range(GROUP)],
    "object or not": [{"p": {"x": 1} if i % 2 else 5, "z": 0} for i in range(GROUP)],
    "empty object or not": [{"p": {"x": 1} if i % 2 else {}, "z": 0} for i in range(GROUP)],
    "empty records": [{} for _ in range(GROUP)],
    "groups interleaved": [({"a": i, "b": "x"} if i % 3 else {"c": [i], "d": {"e": i}}) for i in range(3 * GROUP)],
    "unicode": [{"名前": "東京", "emoji": "☕🎧", "é": i} for i in range(GROUP)],
}


@pytest.mark.parametrize("records", CASES.values(), ids=CASES.keys())
def test_column_at_a_time_matches_the_csv_module(records: list[dict[str, Any]]) -> None:
    written, expected = encode(records)
    assert written == expected


def test_a_column_not_in_the_header_is_still_an_error_naming_it() -> None:
    records = [{"a": 1, "b": 2, "extra": i} for i in range(GROUP)]
    with pytest.raises(RecordError, match="'extra'") as caught:
        encode(records, columns=["a", "b"])
    assert caught.value.index == 0


def test_a_collision_is_still_an_error_naming_it() -> None:
    records = [{"a": {"b": 1}, "a.b": i} for i in range(GROUP)]
    with pytest.raises(RecordError, match=r"'a\.b'"):
        encode(records, columns=["a.b", "z"])


def test_a_lone_column_keeps_the_csv_modules_quoted_empty_row() -> None:
    written, expected = encode([{"a": None} for _ in range(GROUP)])
    assert written == expected == b'""\r\n' * GROUP


@st.composite
def groups(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Many records with the same keys, values drawn per column from one type or from any."""
    keys = draw(st.lists(st.sampled_from(["a", "b", "c.d", "é", 'q"']), min_size=1, max_size=4, unique=True))
    nested = draw(st.booleans())
    kinds = {key: draw(st.sampled_from([*SAME_TYPE, None])) for key in keys}

    def value(key: str) -> Any:
        kind = kinds[key]
        return draw(SCALARS if kind is None else SAME_TYPE[kind])

    def record() -> dict[str, Any]:
        top = {key: value(key) for key in keys}
        return {**top, "n": {"x": value(keys[0]), "y": {}}} if nested else top

    return [record() for _ in range(draw(st.integers(min_value=GROUP, max_value=3 * GROUP)))]


@settings(max_examples=200, deadline=None)
@given(records=groups())
def test_any_group_matches_the_csv_module(records: list[dict[str, Any]]) -> None:
    written, expected = encode(records)
    assert written == expected
