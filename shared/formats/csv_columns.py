"""CSV rows a column at a time, for a group of records with the same top-level keys: one C-level pass per column
(a type check, an ``orjson.dumps`` of all its numbers, a join probing for quotes), so that no Python code runs
per record. The cells are those ``flatten_record`` and ``quote_row`` give (``shared.formats.csv_cells``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson

from shared.formats.csv_cells import list_cell, quoted, scalar_text
from shared.formats.flatten import nested_prefix

MIN_COLUMNAR_GROUP = 8  # smaller groups cost less row by row
_MAX_COLUMNAR_DEPTH = 32
_NUMBER_TYPES = frozenset({int, float, bool})


def columnar_rows(
    group: list[dict[str, Any]], columns: Sequence[str], column_set: frozenset[str]
) -> Iterable[str] | None:
    """The rows of ``group`` (parsed records with the same top-level keys) in the order of ``columns``, written a
    column at a time; None when the group does not line up in columns or has a column not in ``column_set``."""
    cells: dict[str, Sequence[str] | None] = {}
    try:
        group_cells(group, "", cells, 0)
    except (_NotColumnar, KeyError, TypeError):  # TypeError: also orjson's, for an integer beyond 64 bits
        return None
    if not cells.keys() <= column_set:
        return None
    blank = ("",) * len(group)
    return map(",".join, zip(*[cells.get(column) or blank for column in columns], strict=True))


class _NotColumnar(Exception):
    """The group's values do not line up in columns (keys or nesting differ): write it row by row."""


def _any_cell(value: Any) -> str:
    """A cell of a column whose values are of mixed types."""
    if value is None:
        return ""
    if type(value) is str:
        return quoted(value)
    if type(value) is list:
        return list_cell(value)
    if type(value) is dict:
        if value:
            raise _NotColumnar
        return "{}"
    return quoted(scalar_text(value))  # numbers, booleans, JsonNumber


def _column_cells(values: tuple[Any, ...], kinds: set[type]) -> Sequence[str] | None:
    """The cells of one leaf column (None: all blank)."""
    if kinds == {str}:
        probe = "".join(values)
        if "," in probe or '"' in probe or "\n" in probe or "\r" in probe:
            return list(map(quoted, values))
        return values
    if kinds <= _NUMBER_TYPES:  # their JSON text holds no comma: one dumps, one split
        return orjson.dumps(values)[1:-1].decode().split(",")
    if kinds == {type(None)}:
        return None
    if kinds == {list}:
        return list(map(list_cell, values))
    return list(map(_any_cell, values))


def group_cells(
    objects: Sequence[Mapping[str, Any]], prefix: str, out: dict[str, Sequence[str] | None], depth: int
) -> None:
    """Add the cells of every column of ``objects`` (all with the same keys) to ``out``, by column name.

    Raises ``_NotColumnar`` (or ``KeyError``, ``TypeError``) when the objects do not line up in columns."""
    keys = tuple(objects[0])
    if not keys or depth > _MAX_COLUMNAR_DEPTH or set(map(len, objects)) != {len(keys)}:
        raise _NotColumnar
    if len(keys) == 1:
        columns: Iterable[tuple[Any, ...]] = [tuple(map(itemgetter(keys[0]), objects))]
    else:
        columns = zip(*map(itemgetter(*keys), objects), strict=True)  # KeyError: other keys
    for key, values in zip(keys, columns, strict=True):
        name = prefix + key
        kinds = set(map(type, values))
        if dict in kinds:
            if kinds != {dict} or not all(values):
                if kinds != {dict} or any(values):
                    raise _NotColumnar
                cells: Sequence[str] | None = ("{}",) * len(values)  # every one an empty object
            else:
                group_cells(values, nested_prefix(prefix, key), out, depth + 1)
                continue
        else:
            cells = _column_cells(values, kinds)
        if name in out:
            raise _NotColumnar  # two fields, one column: row by row names the collision
        out[name] = cells
