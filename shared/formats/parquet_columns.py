"""Parsed records as columns of values, by flattened key (``shared.formats.flatten``), for typed Parquet (pure).

``chunk_columns`` gives, for a chunk of records, every field's values in record order (None where a record lacks
it) and each record's *rest*: the [key, value] pairs of fields that get no column of their own, in record order.
A field gets none when it repeats a column an earlier field of the same record took (``{"a.b": 1, "a": {"b":
2}}``: ``a.b`` holds 1, the rest ``[["a.b", 2]]``); ``move_to_rest`` adds those the schema has no room for.

Records with the same top-level keys are taken a column at a time (one ``itemgetter`` per object level, as the
CSV encoder's column path does), so no Python code runs per value; a group whose objects do not line up (their
nested keys differ, a field repeats a column) is taken record by record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from shared.formats.flatten import flattened_items, nested_prefix

MIN_COLUMNAR_GROUP = 8  # smaller groups cost less record by record
_MAX_COLUMNAR_DEPTH = 32

Rest = list[list[Any]]  # [key, value] pairs


class _NotColumnar(Exception):
    """The group's objects do not line up in columns: take it record by record."""


def chunk_columns(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Any]], list[Rest | None]]:
    """Every field's values in record order (None where absent), and each record's rest (None: nothing left)."""
    count = len(records)
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, keys in enumerate(map(tuple, records)):
        group = groups.get(keys)
        if group is None:
            groups[keys] = [index]
        else:
            group.append(index)
    columns: dict[str, list[Any]] = {}
    rest: list[Rest | None] = [None] * count
    for indexes in groups.values():
        if len(groups) == 1:
            members: Sequence[Mapping[str, Any]] = records
        else:
            members = list(map(records.__getitem__, indexes))
        found: Mapping[str, Sequence[Any]] | None = None
        if len(members) >= MIN_COLUMNAR_GROUP:
            found = _group_columns(members)
        if found is None:
            found = _row_columns(members, indexes, rest)
        for key, values in found.items():
            if len(groups) == 1:
                columns[key] = values if isinstance(values, list) else list(values)
                continue
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * count
            list(map(column.__setitem__, indexes, values))
    return columns, rest


def _group_columns(group: Sequence[Mapping[str, Any]]) -> dict[str, Sequence[Any]] | None:
    out: dict[str, Sequence[Any]] = {}
    try:
        _walk(group, "", out, 0)
    except (_NotColumnar, KeyError, TypeError):
        return None
    return out


def _walk(objects: Sequence[Mapping[str, Any]], prefix: str, out: dict[str, Sequence[Any]], depth: int) -> None:
    """Add the values of every leaf of `objects` (all with the same keys) to `out`, by column name."""
    keys = tuple(objects[0])
    if not keys or depth > _MAX_COLUMNAR_DEPTH or set(map(len, objects)) != {len(keys)}:
        raise _NotColumnar
    if len(keys) == 1:
        columns: Iterable[tuple[Any, ...]] = [tuple(map(itemgetter(keys[0]), objects))]
    else:
        columns = zip(*map(itemgetter(*keys), objects), strict=True)  # KeyError: other keys
    for key, values in zip(keys, columns, strict=True):
        kinds = set(map(type, values))
        if dict in kinds:
            if kinds != {dict}:
                raise _NotColumnar  # objects beside other values: record by record
            if all(values):
                _walk(values, nested_prefix(prefix, key), out, depth + 1)
                continue
            if any(values):
                raise _NotColumnar
        name = prefix + key
        if name in out:
            raise _NotColumnar  # two fields, one column: record by record keeps the later in the rest
        out[name] = values


def _row_columns(group: Sequence[Mapping[str, Any]], indexes: Sequence[int],
                 rest: list[Rest | None]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for position, (record, index) in enumerate(zip(group, indexes, strict=True)):
        seen: set[str] = set()
        for key, value in flattened_items(record):
            if key in seen:
                if value is not None:
                    found = rest[index]
                    if found is None:
                        found = rest[index] = []
                    found.append([key, value])
                continue
            seen.add(key)
            column = out.get(key)
            if column is None:
                column = out[key] = [None] * len(group)
            column[position] = value
    return out


def move_to_rest(columns: dict[str, list[Any]], keys: Iterable[str], rest: list[Rest | None]) -> None:
    """Take the fields `keys` out of `columns` into each record's rest (their nulls are dropped: null reads as
    absent)."""
    for key in keys:
        values = columns.pop(key)
        for index, value in enumerate(values):
            if value is not None:
                found = rest[index]
                if found is None:
                    found = rest[index] = []
                found.append([key, value])
