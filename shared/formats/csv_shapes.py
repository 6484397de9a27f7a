"""CSV rows of a record shape already seen, written with C-level calls only (``RowShape``): the fast path for
records whose every level has the same keys and value types as one the encoder has learned."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import call, itemgetter
from typing import Any

import orjson

from shared.formats.csv_cells import NEEDS_QUOTES, list_cell
from shared.formats.flatten import nested_prefix


class _Mismatch(Exception):
    """The record does not have the shape tried."""


SHAPE_MISMATCH = (_Mismatch, KeyError, TypeError)  # what RowShape.row raises for a record of another shape


def _empty_object_cell(value: dict[str, Any]) -> str:
    if value:
        raise _Mismatch
    return "{}"


_SHAPE_LEAF_TYPES = (str, int, float, bool, type(None), list, dict)  # dict: an empty object


def _picker(items: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter(*items)``, but always giving a tuple."""
    if len(items) == 1:
        item = items[0]
        return lambda obj: (obj[item],)
    return itemgetter(*items) if items else lambda obj: ()


@dataclass(frozen=True, slots=True)
class RowShape:
    """The exact shape of a record (the keys of each object, the type of each value) and how to
    write records of that shape as CSV rows with C-level calls: one ``itemgetter`` per object, one
    type check for all values, one ``orjson.dumps`` for all numbers and booleans, one
    ``itemgetter`` putting the cells in the header's order. It is only tried on records with the
    same top-level keys, in the same order.

    Row layout: every value in walk order (objects included, never written), then the cells of
    the numbers and booleans, then those of the lists and empty objects, then a blank (for nulls
    and for the columns the record lacks).
    """

    top: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    nested: tuple[tuple[int, Callable[[Mapping[str, Any]], tuple[Any, ...]], int], ...]  # (position, getter, size)
    types: tuple[type, ...]  # of every value, objects included
    scalars: Callable[[list[Any]], tuple[Any, ...]] | None  # picks the numbers and booleans
    to_convert: Callable[[list[Any]], tuple[Any, ...]]  # picks the lists and empty objects
    converters: tuple[Callable[[Any], str], ...]  # their cells, quoted when a list needs it
    texts: Callable[[list[Any]], tuple[str, ...]]  # picks the text values: the cells that may need quoting
    text_positions: tuple[int, ...]
    order: Callable[[list[Any]], tuple[str, ...]]  # picks the header's cells

    def row(self, record: Mapping[str, Any]) -> str | None:
        """The CSV row of ``record``, or None (or one of ``SHAPE_MISMATCH`` raised) for a record of another shape."""
        values = list(self.top(record))
        for position, getter, size in self.nested:
            obj = values[position]
            if len(obj) != size:
                return None
            values += getter(obj)
        if tuple(map(type, values)) != self.types:
            return None
        if self.scalars is not None:  # JSON text of numbers and booleans holds no comma: split it
            values += orjson.dumps(self.scalars(values))[1:-1].decode().split(",")
        if self.converters:
            values += map(call, self.converters, self.to_convert(values))
        values.append("")
        texts = self.texts(values)
        probe = "".join(texts)
        if "," in probe or '"' in probe or "\n" in probe or "\r" in probe:
            for position in compress(self.text_positions, map(NEEDS_QUOTES, texts)):
                values[position] = '"' + values[position].replace('"', '""') + '"'
        return ",".join(self.order(values))

    @classmethod
    def of(cls, record: Mapping[str, Any], columns: Sequence[str]) -> RowShape | None:
        """The shape of ``record`` (needs 2+ columns), or None when it is one for the generic path."""
        types: list[type] = []
        names: dict[str, int] = {}  # column -> position of its value
        nested: list[tuple[int, Callable[[Mapping[str, Any]], tuple[Any, ...]], int]] = []
        objects: list[tuple[Mapping[str, Any], str, int]] = [(record, "", -1)]
        for obj, prefix, position in objects:  # grows while it is walked: objects in the order rows lay them out
            if position >= 0:
                nested.append((position, _picker(list(obj)), len(obj)))
            for key, value in obj.items():
                kind = type(value)
                types.append(kind)
                if kind is dict and value:
                    objects.append((value, nested_prefix(prefix, key), len(types) - 1))
                elif kind not in _SHAPE_LEAF_TYPES or prefix + key in names:
                    return None  # a str subclass such as JsonNumber, or a collision
                else:
                    names[prefix + key] = len(types) - 1
        if not record or len(columns) < 2 or not names.keys() <= set(columns):
            return None
        leaves = sorted(names.values())
        scalars = [i for i in leaves if types[i] in (int, float, bool)]
        converted = [i for i in leaves if types[i] in (list, dict)]
        cell_at = {position: len(types) + i for i, position in enumerate(scalars + converted)}
        blank = len(types) + len(cell_at)
        cell_at.update((i, blank) for i in leaves if types[i] is type(None))
        text_positions = tuple(i for i in leaves if types[i] is str)
        return cls(
            top=_picker(list(record)),
            nested=tuple(nested),
            types=tuple(types),
            scalars=_picker(scalars) if scalars else None,
            to_convert=_picker(converted),
            converters=tuple(list_cell if types[i] is list else _empty_object_cell for i in converted),
            texts=_picker(text_positions),
            text_positions=text_positions,
            order=_picker([cell_at.get(names[c], names[c]) if c in names else blank for c in columns]),
        )
