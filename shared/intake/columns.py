"""The CSV columns of a partition, learned as its records are staged: the union of their column names by the
rule in ``shared.formats.flatten``, with a memo of record shapes so that a record of a shape already seen
costs one count of "{" in its text rather than a walk."""

from __future__ import annotations

from typing import Any

from shared.formats.flatten import flattened_keys, nested_prefix

_SHAPE_MEMO_LIMIT = 4096  # shapes remembered per object path
# The column walk recurses this deep at most (far below Python's recursion limit); deeper subtrees are walked
# by flattened_keys, which does not recurse, and are not remembered. A budget for the stack, not a JSON limit.
_RECURSION_DEPTH = 200


class PartitionColumns:
    """The columns of one partition's records so far (``columns``), and the record shapes seen, one table per
    object path ("", "properties.", ...).

    A table maps a level's key tuple to its object-valued keys: (key, was it empty, the child's table).
    ``columns`` holds the columns of every remembered shape.
    """

    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.tables: dict[str, _Table] = {"": {}}

    def add(self, record: dict[str, Any], line: bytes) -> None:
        """Add ``flattened_keys(record)`` to ``columns``; ``line`` is the record's JSON text.

        Fast path: every level of the record has a remembered shape, and the line holds exactly as many
        "{" as the objects those shapes account for. Every object puts at least one "{" in the text, so no
        other object hides among the values (not even in a list): the record adds no new column.
        """
        objects = _known_objects(record, self.tables[""])
        if not objects or line.count(b"{") != objects:
            _collect_columns(record, "", self, 0)


_Table = dict[tuple[str, ...], list[tuple[str, bool, "_Table"]]]


def _known_objects(obj: dict[str, Any], table: _Table) -> int:
    """How many objects ``obj`` holds (itself included) if all its levels are in the tables, else 0."""
    nested = table.get(tuple(obj))
    if nested is None:
        return 0
    count = 1
    for key, was_empty, child_table in nested:
        child = obj[key]
        if type(child) is not dict or (not child) is not was_empty:
            return 0
        if was_empty:
            count += 1
        else:
            inner = _known_objects(child, child_table)
            if not inner:
                return 0
            count += inner
    return count


def _collect_columns(obj: dict[str, Any], prefix: str, shapes: PartitionColumns, depth: int) -> None:
    out = shapes.columns
    nested: list[tuple[str, bool, _Table]] | None = []
    for key, value in obj.items():
        if type(value) is not dict:
            out.add(prefix + key)
        elif not value:
            out.add(prefix + key)
            if nested is not None:
                nested.append((key, True, {}))
        elif depth < _RECURSION_DEPTH:
            path = nested_prefix(prefix, key)
            _collect_columns(value, path, shapes, depth + 1)
            if nested is not None:
                nested.append((key, False, shapes.tables.setdefault(path, {})))
        else:  # too deep to remember (no recursion): this level never takes the fast path
            out.update(flattened_keys(value, nested_prefix(prefix, key)))
            nested = None
    table = shapes.tables.setdefault(prefix, {})
    if nested is not None and len(table) < _SHAPE_MEMO_LIMIT:
        table[tuple(obj)] = nested
