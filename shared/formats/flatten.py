"""How a record's keys become column names, and when two of them collide: the one rule that intake (to learn a
partition's CSV columns), the CSV encoder and typed Parquet columns all follow.

- a nested object's keys are joined to its own key with ".": ``{"properties": {"a": {"b": 1}}}`` gives
  ``properties.a.b``;
- an empty object is one column at its own key: ``{"a": {}}`` gives ``a``;
- a list is one column (its JSON text), whatever it holds: ``{"items": [{"x": 1}]}`` gives ``items``;
- every other value (string, number, boolean, null) is one column at its key.

Keys are not escaped: ``{"a.b": 1}`` and ``{"a": {"b": 1}}`` both give ``a.b``. Such a record cannot be
written as CSV, since neither field may be dropped; ``repeated_column`` names the column
(``may_repeat_a_column`` first, where every record is checked). Typed Parquet keeps the later field in
``_rest_json`` instead (``shared.formats.parquet_columns``).

``flattened_items`` is the rule (``flattened_keys`` gives its names). The walks that must be fast (intake's shape
memo, the CSV encoder's row, shape and column paths, Parquet's column path) keep their own loops, but take every
nested object's prefix from ``nested_prefix``; tests check their names against ``flattened_keys``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

SEPARATOR = "."


def nested_prefix(prefix: str, key: str) -> str:
    """What the columns of the members of the object at ``prefix + key`` start with."""
    return prefix + key + SEPARATOR


def flattened_keys(record: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The CSV column names of ``record``, in record order, by the rules above (a repeated name included)."""
    return (key for key, _ in flattened_items(record, prefix))


def flattened_items(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(column name, value) of every leaf of ``record``, in record order (a repeated name included): the value is
    a string, number, boolean, null, list or empty object.

    A member's column is its object's prefix followed by its key; a non-empty object is not a column
    itself, its members are. Works at any depth (no recursion).
    """
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [(prefix, iter(record.items()))]
    while stack:
        path, items = stack[-1]
        for key, value in items:
            if isinstance(value, Mapping) and value:
                stack.append((nested_prefix(path, key), iter(value.items())))
                break
            yield path + key, value
        else:
            stack.pop()


def repeated_column(record: Mapping[str, Any]) -> str | None:
    """The first column that two fields of ``record`` both become, or None when every column is unique."""
    seen: set[str] = set()
    for column in flattened_keys(record):
        if column in seen:
            return column
        seen.add(column)
    return None


def may_repeat_a_column(record: dict[str, Any]) -> bool:
    """Whether a key of parsed JSON ``record`` (its objects are dicts) holds the separator: only such a key can
    make two columns collide, and most records have none, so this cheap walk spares ``repeated_column``."""
    stack = [record]
    while stack:
        current = stack.pop()
        for key, value in current.items():
            if SEPARATOR in key:
                return True
            if type(value) is dict:
                stack.append(value)
    return False
