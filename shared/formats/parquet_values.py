"""A column's values in a typed Parquet file: which values its type holds exactly, and the JSON text of the others
for its companion column (pure).

What a type holds (docs/formats.md, "Typed columns"):

- ``string``: strings;
- ``int64``: integers from -2**63 to 2**63-1;
- ``float64``: numbers whose double is the number sent: decimals whose shortest double text is the same number
  (``0.1``, ``1.50``, ``1e-7``; not ``0.10000000000000000001`` or ``1e400``), and integers up to 2**53 in size;
- ``bool``: true and false;
- ``json``: anything, as its compact JSON text (numbers exactly as sent): lists, empty objects, and other values
  met after a field was first seen with a list.

A value its column's type does not hold is null there, and its JSON text (numbers exactly as sent, strings
quoted) is in the companion column; null is null in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from shared.formats.exact_json import JsonNumber, json_text
from shared.formats.parquet_schema import ColumnType

ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "json": pa.string(),
}
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_DOUBLE_INT = 2**53
_NONE = type(None)
# The value types each column type holds without a check of the value itself (beside None).
_PLAIN_KINDS: dict[ColumnType, frozenset[type]] = {
    "string": frozenset({str, _NONE}), "bool": frozenset({bool, _NONE}), "float64": frozenset({float, _NONE}),
    "int64": frozenset({int, _NONE}),
}


def exact_double(value: Any) -> float | None:
    """The double that is exactly the number sent, or None (not a number, or a number a double would alter)."""
    cls = type(value)
    if cls is float:
        return value  # type: ignore[no-any-return]  # parsed by orjson: its text is the one sent
    if cls is int:
        return float(value) if -_EXACT_DOUBLE_INT <= value <= _EXACT_DOUBLE_INT else None
    if cls is JsonNumber:
        number = float(value)
        if not math.isfinite(number):
            return None
        try:
            same = Decimal(str.__str__(value)) == Decimal(repr(number))
        except InvalidOperation:
            return None
        return number if same else None
    return None


def _fits_int64(value: Any) -> bool:
    return type(value) is int and _INT64[0] <= value <= _INT64[1]


_FIT: dict[ColumnType, Callable[[Any], Any]] = {
    "string": lambda v: v if type(v) is str else None,
    "bool": lambda v: v if type(v) is bool else None,
    "int64": lambda v: v if _fits_int64(v) else None,
    "float64": exact_double,
}


def typed_column(values: Sequence[Any], column_type: ColumnType) -> tuple[pa.Array, list[str | None] | None]:
    """The Arrow array of `values` in a column of `column_type`, and the companion column's texts (None when every
    value fit). Plain columns (all values of the type, or null) take one C-level conversion."""
    arrow_type = ARROW_TYPES[column_type]
    if column_type == "json":
        return pa.array([None if v is None else json_text(v) for v in values], arrow_type), None
    kinds = set(map(type, values))
    if kinds <= _PLAIN_KINDS[column_type]:
        try:
            return pa.array(values, arrow_type), None
        except OverflowError:  # an integer beyond 64 bits: sorted out below
            pass
    elif column_type == "float64" and kinds <= {float, int, _NONE}:
        try:
            if max(abs(v) for v in values if type(v) is int) <= _EXACT_DOUBLE_INT:
                return pa.array(values, arrow_type), None
        except OverflowError:
            pass
    fit = _FIT[column_type]
    main: list[Any] = []
    companion: list[str | None] = []
    for value in values:
        held = None if value is None else fit(value)
        main.append(held)
        companion.append(None if value is None or held is not None else json_text(value))
    return pa.array(main, arrow_type), companion if any(text is not None for text in companion) else None
