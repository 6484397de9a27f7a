"""CSV rows from staged records: flattening rules and a fast, exact RFC 4180 encoder.

Rows of a record shape already seen are written with C-level calls only (``_Shape``); records with the
same top-level keys are written a column at a time. Anything irregular takes the general row path,
whose output is byte for byte what the ``csv`` module writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import call, itemgetter
from typing import Any

import orjson

from shared.formats.exact_json import JsonNumber, RecordError, parse_chunk
from shared.formats.gc_pause import cyclic_gc_paused

# ---------------------------------------------------------------------------------------------
# Flattening (the column rules shared with shared/intake/records.py's flattened_keys)


def flatten_record(record: Mapping[str, Any]) -> dict[str, str]:
    """The CSV cells of one record, by column name.

    Rules (``shared.records.flattened_keys`` yields the same names):

    - a nested object's keys are joined to its own key with "." (``{"a": {"b": 1}}`` -> ``a.b``);
    - an empty object is one cell at its own key: ``"{}"``;
    - a list is one cell: its compact JSON text (numbers exact);
    - ``None`` -> ``""``; booleans -> ``"true"`` / ``"false"``; numbers -> their JSON text, exactly as
      sent (a ``JsonNumber``'s literal; a float as orjson prints it, which is the text sent whenever
      ``parse_exact`` chose orjson); strings unchanged.

    Collisions: when two fields yield the same column (``{"a.b": 1, "a": {"b": 2}}``) neither is
    dropped: ``ValueError`` names the column, and the record must be renamed at its source.
    """
    out: dict[str, str] = {}
    try:
        leaves = _flatten_into(out, record, "")
    except RecursionError:
        raise ValueError("the record nests objects too deeply to be written as CSV") from None
    if leaves != len(out):
        raise _collision_error(record)
    return out


def _flatten_into(out: dict[str, str], obj: Mapping[str, Any], prefix: str) -> int:
    """Add ``obj``'s cells to ``out``; return how many were added (more than ``out`` grew by on a collision)."""
    # The hot loop of CSV export: exact type checks, the most frequent types first, and the
    # collision check paid per object (via the count) rather than per cell.
    leaves = len(obj)
    for key, value in obj.items():
        cls = type(value)
        if cls is str:
            out[prefix + key] = value
        elif cls is int:
            out[prefix + key] = int.__repr__(value)
        elif cls is dict and value:
            leaves += _flatten_into(out, value, prefix + key + ".") - 1
        elif cls is float:
            out[prefix + key] = _float_text(value)
        elif cls is bool:
            out[prefix + key] = "true" if value else "false"
        elif value is None:
            out[prefix + key] = ""
        elif cls is list:
            out[prefix + key] = json_text(value)
        elif isinstance(value, Mapping) and value:
            leaves += _flatten_into(out, value, prefix + key + ".") - 1
        else:
            out[prefix + key] = _scalar_text(value)
    return leaves


def _float_text(value: float) -> str:
    text = orjson.dumps(value)
    if text == b"null":
        raise ValueError(f"{value!r} is not a JSON number")
    return text.decode()


def _column_names(obj: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, value in obj.items():
        if isinstance(value, Mapping) and value:
            yield from _column_names(value, prefix + key + ".")
        else:
            yield prefix + key


def _collision_error(record: Mapping[str, Any]) -> ValueError:
    seen: set[str] = set()
    for name in _column_names(record, ""):
        if name in seen:
            return ValueError(
                f"two fields of the record both become the CSV column {name!r} (a key containing '.' "
                "matches a nested object's key); rename one of them"
            )
        seen.add(name)
    return ValueError("two fields of the record become the same CSV column")


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):  # JsonNumber or another str subclass
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, list | tuple | Mapping):
        return json_text(value)
    raise TypeError(f"cannot write a {type(value).__name__} as a CSV cell")


def json_text(value: Any) -> str:
    """Compact JSON text of a parsed value, numbers exact (``JsonNumber`` literals, big integers)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_SUBCLASS).decode()
    except orjson.JSONEncodeError:
        pass  # a JsonNumber, an integer beyond 64 bits, or nested deeper than 255 levels
    try:
        return _slow_json_text(value)
    except RecursionError:
        raise ValueError("a list nests too deeply to be written as CSV") from None


def _slow_json_text(value: Any) -> str:
    if isinstance(value, JsonNumber):
        return str.__str__(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        return json.dumps(str.__str__(value), ensure_ascii=False)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + _slow_json_text(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_slow_json_text, value)) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


# ---------------------------------------------------------------------------------------------
# Encoders


_RECORDS_AT_ONCE = 500  # parsed together: amortises calls, stays in cache, bounds memory
_MAX_SHAPES = 64  # row shapes one encoder learns; records of other shapes take the generic path
_MAX_SHAPES_PER_KEYS = 8  # shapes tried for one set of top-level keys before the generic path
_NEEDS_QUOTES = re.compile(r'[,"\r\n]').search


def _quote_row(row: list[str]) -> str:
    """Join cells as ``csv.writer`` does by default: RFC 4180, quoting only the cells that need it."""
    line = ",".join(row)
    if line.count(",") == len(row) - 1 and '"' not in line and "\n" not in line and "\r" not in line and line:
        return line  # the usual case, checked in C rather than cell by cell
    for index in compress(range(len(row)), map(_NEEDS_QUOTES, row)):
        row[index] = '"' + row[index].replace('"', '""') + '"'
    return ",".join(row) if row != [""] else '""'


class CsvEncoder:
    """CSV rows (RFC 4180: comma, double quotes, CRLF, UTF-8 without BOM) in a fixed column order.

    ``columns`` is the file's stable column order (the caller's sorted union of the batch's
    flattened keys). A record lacking a column gets an empty cell; a record with a column not in
    ``columns`` is an error, never dropped. Cells are quoted as ``csv.writer`` quotes them.

    Speed: the encoder learns the shapes of the records it meets (``_Shape``) and writes the
    records of a known shape without a Python loop over their values.
    """

    def __init__(self, columns: Sequence[str]):
        self._columns = tuple(columns)
        self._column_set = frozenset(self._columns)
        if len(self._column_set) != len(self._columns):
            raise ValueError("CSV columns must be unique")
        self._blanks = ("",) * len(self._columns)
        self._shapes: dict[tuple[str, ...], list[_Shape]] = {}
        self._shapes_left = _MAX_SHAPES if len(self._columns) > 1 else 0

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    def header(self) -> bytes:
        return (_quote_row(list(self._columns)) + "\r\n").encode()

    def encode(self, lines: Iterable[bytes]) -> tuple[bytes, int]:
        """The CSV rows of a chunk of staged lines, and how many records they hold.

        Raises ``RecordError`` (a ``ValueError``) naming the record's index within the chunk.
        """
        batch = lines if isinstance(lines, Sequence) else list(lines)
        rows: list[str] = []
        with cyclic_gc_paused():
            for start in range(0, len(batch), _RECORDS_AT_ONCE):
                records = parse_chunk(batch[start : start + _RECORDS_AT_ONCE], first_index=start)
                try:
                    rows.extend(self._rows(records))
                except (ValueError, TypeError):
                    self._raise_for_bad_record(records, start)
                    raise
        if not rows:
            return b"", 0
        rows.append("")  # the last row's line end
        return "\r\n".join(rows).encode(), len(rows) - 1

    def _rows(self, records: list[dict[str, Any]]) -> list[str]:
        """The rows of parsed records, in order: a column at a time for each group of records with the
        same top-level keys (``_group_cells``), row by row (``_row``) for a group it does not take."""
        if len(self._columns) < 2:  # a lone empty cell is written '""': row by row
            return list(map(self._row, records))
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, keys in enumerate(map(tuple, records)):
            group = groups.get(keys)
            if group is None:
                groups[keys] = [index]
            else:
                group.append(index)
        if len(groups) == 1:
            return list(self._group_rows(records))
        rows = [""] * len(records)
        for indexes in groups.values():
            list(map(rows.__setitem__, indexes, self._group_rows(list(map(records.__getitem__, indexes)))))
        return rows

    def _group_rows(self, group: list[dict[str, Any]]) -> Iterable[str]:
        if len(group) < _MIN_COLUMNAR_GROUP:
            return map(self._row, group)
        cells: dict[str, Sequence[str] | None] = {}
        try:
            _group_cells(group, "", cells, 0)
        except (_NotColumnar, KeyError, TypeError):  # TypeError: also orjson's, for an integer beyond 64 bits
            return map(self._row, group)
        if not cells.keys() <= self._column_set:
            return map(self._row, group)  # which raises, naming the unknown column
        blank = ("",) * len(group)
        return map(",".join, zip(*[cells.get(column) or blank for column in self._columns], strict=True))

    def _row(self, record: dict[str, Any]) -> str:
        """One CSV row without its line end."""
        keys = tuple(record)
        shapes = self._shapes.get(keys)
        if shapes is not None:
            for shape in shapes:
                try:
                    line = shape.row(record)
                except _MISMATCH:
                    continue
                if line is not None:
                    return line
        line = self._generic_row(record)
        if self._shapes_left and (shapes is None or len(shapes) < _MAX_SHAPES_PER_KEYS):
            self._shapes_left -= 1  # a shape that cannot be learned counts too: stop trying
            learned = _Shape.of(record, self._columns)
            if learned is not None:
                self._shapes.setdefault(keys, []).append(learned)
        return line

    def _generic_row(self, record: Mapping[str, Any]) -> str:
        cells = flatten_record(record)
        if not cells.keys() <= self._column_set:
            unknown = ", ".join(repr(name) for name in sorted(cells.keys() - self._column_set))
            raise ValueError(f"the record has columns not in the file's header: {unknown}")
        return _quote_row(list(map(cells.get, self._columns, self._blanks)))

    def _raise_for_bad_record(self, records: list[dict[str, Any]], first_index: int) -> None:
        for index, record in enumerate(records, start=first_index):
            try:
                self._generic_row(record)
            except (ValueError, TypeError) as exc:
                raise RecordError(index, f"record {index + 1} of the chunk: {exc}") from exc


class _Mismatch(Exception):
    """The record does not have the shape tried."""


_MISMATCH = (_Mismatch, KeyError, TypeError)


def _list_cell(value: list[Any]) -> str:
    text = json_text(value)  # never holds a raw CR or LF: JSON escapes them
    return '"' + text.replace('"', '""') + '"' if "," in text or '"' in text else text


def _empty_object_cell(value: dict[str, Any]) -> str:
    if value:
        raise _Mismatch
    return "{}"


# ---------------------------------------------------------------------------------------------
# Column at a time: the cells of a group of records with the same top-level keys, one column per
# C-level pass (a type check, an orjson.dumps of all its numbers, a join probing for quotes), so
# that no Python code runs per record. The cells are those flatten_record and _quote_row give.

_MIN_COLUMNAR_GROUP = 8  # smaller groups cost less row by row
_MAX_COLUMNAR_DEPTH = 32
_NUMBER_TYPES = frozenset({int, float, bool})


class _NotColumnar(Exception):
    """The group's values do not line up in columns (keys or nesting differ): write it row by row."""


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if _NEEDS_QUOTES(cell) else cell


def _any_cell(value: Any) -> str:
    """A cell of a column whose values are of mixed types."""
    if value is None:
        return ""
    if type(value) is str:
        return _quoted(value)
    if type(value) is list:
        return _list_cell(value)
    if type(value) is dict:
        if value:
            raise _NotColumnar
        return "{}"
    return _quoted(_scalar_text(value))  # numbers, booleans, JsonNumber


def _column_cells(values: tuple[Any, ...], kinds: set[type]) -> Sequence[str] | None:
    """The cells of one leaf column (None: all blank)."""
    if kinds == {str}:
        probe = "".join(values)
        if "," in probe or '"' in probe or "\n" in probe or "\r" in probe:
            return list(map(_quoted, values))
        return values
    if kinds <= _NUMBER_TYPES:  # their JSON text holds no comma: one dumps, one split
        return orjson.dumps(values)[1:-1].decode().split(",")
    if kinds == {type(None)}:
        return None
    if kinds == {list}:
        return list(map(_list_cell, values))
    return list(map(_any_cell, values))


def _group_cells(objects: Sequence[Mapping[str, Any]], prefix: str, out: dict[str, Sequence[str] | None],
                 depth: int) -> None:
    """Add the cells of every column of ``objects`` (all with the same keys) to ``out``, by column name."""
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
                _group_cells(values, name + ".", out, depth + 1)
                continue
        else:
            cells = _column_cells(values, kinds)
        if name in out:
            raise _NotColumnar  # two fields, one column: row by row names the collision
        out[name] = cells


_SHAPE_LEAF_TYPES = (str, int, float, bool, type(None), list, dict)  # dict: an empty object


def _picker(items: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter(*items)``, but always giving a tuple."""
    if len(items) == 1:
        item = items[0]
        return lambda obj: (obj[item],)
    return itemgetter(*items) if items else lambda obj: ()


@dataclass(frozen=True, slots=True)
class _Shape:
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
        """The CSV row of ``record``, or None (or one of ``_MISMATCH`` raised) for a record of another shape."""
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
            for position in compress(self.text_positions, map(_NEEDS_QUOTES, texts)):
                values[position] = '"' + values[position].replace('"', '""') + '"'
        return ",".join(self.order(values))

    @classmethod
    def of(cls, record: Mapping[str, Any], columns: Sequence[str]) -> _Shape | None:
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
                    objects.append((value, prefix + key + ".", len(types) - 1))
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
            converters=tuple(_list_cell if types[i] is list else _empty_object_cell for i in converted),
            texts=_picker(text_positions),
            text_positions=text_positions,
            order=_picker([cell_at.get(names[c], names[c]) if c in names else blank for c in columns]),
        )


