"""Turn staged JSONL lines into destination files: JSONL or CSV, gzip or uncompressed.

Staged records are lines of compact JSON, kept as the exact bytes that were sent. JSONL output
moves those bytes untouched (no parsing); CSV output parses each record, flattens nested objects
into columns and writes RFC 4180 rows. Numbers stay exact: integers beyond 64 bits and floats
whose text a double would not reproduce are kept as the literal text that was sent.

Speed matters (the export is measured against plain gzip): work is done per chunk of lines
wherever it can be (one ``orjson.loads`` and one ``orjson.dumps`` check per chunk), CSV rows of a
shape already seen are written with C-level calls only (``_Shape``), and gzip runs in a helper
thread while the next chunk is encoded (``PartEncoder``).
"""

from __future__ import annotations

import gc
import json
import re
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, compress
from operator import call, itemgetter
from typing import Any, Literal, NoReturn

import orjson

Format = Literal["jsonl", "csv"]
Compression = Literal["gzip", "none"]

_EXTENSIONS: dict[str, str] = {"jsonl": "jsonl", "csv": "csv"}
_CONTENT_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def file_extension(fmt: Format, compression: Compression) -> str:
    """The data file's extension without the leading dot: "jsonl", "jsonl.gz", "csv", "csv.gz"."""
    base = _EXTENSIONS[fmt]
    return f"{base}.gz" if compression == "gzip" else base


def content_type(fmt: Format) -> str:
    """The blob's Content-Type for a data file of this format (gzip is a Content-Encoding)."""
    return _CONTENT_TYPES[fmt]


# ---------------------------------------------------------------------------------------------
# Parsing with exact numbers


class JsonNumber(str):
    """A JSON number kept as the literal text that was sent (``float(n)`` or ``Decimal(n)`` to compute)."""

    __slots__ = ()


# A number literal that might not come back exactly from a double or a 64-bit integer: 19+ digits
# (orjson turns integers beyond 64 bits into floats), an exponent, a float with more than 15
# digits (a double keeps 15), a fraction with trailing zeros ("1.50"; "1.0" is fine), or one below
# 1e-4 (printed in exponent form). A number only ever follows ":", "," or "[" (plus JSON
# whitespace); the same text inside a string is a false alarm that costs only speed. Python's
# regex engine scans at ~60 MB/s, so it only runs when the cheap check below fails.
_INEXACT_NUMBER = re.compile(
    rb"[:,\[][ \t\r\n]*-?(?:\d{19}|\d+(?:\.\d+)?[eE]|(?=[\d.]{17})\d+\.|\d+\.\d+0(?!\d)|0\.0000)"
)
_MAX_INT_DIGITS = 4300  # CPython's default limit for int <-> str conversion


def _exact_int(text: str) -> int | JsonNumber:
    return int(text) if len(text) <= _MAX_INT_DIGITS else JsonNumber(text)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_slow(line: bytes) -> Any:
    return json.loads(line, parse_int=_exact_int, parse_float=JsonNumber, parse_constant=_reject_constant)


def parse_exact(line: bytes) -> dict[str, Any]:
    """Parse one staged record, keeping every number exactly as sent.

    Fast path: ``orjson.loads``, proven exact when ``orjson.dumps`` gives the line back (every
    number then prints as it was sent). Otherwise, when the line holds a number a double or a
    64-bit integer would alter (``_INEXACT_NUMBER``), the stdlib parser is used: integers become
    ``int`` and every float a ``JsonNumber`` holding its literal text. Raises ``ValueError`` when
    the line is not a JSON object.
    """
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        if not _INEXACT_NUMBER.search(line):
            raise
        record = _parse_slow(line)  # e.g. 1e400, which orjson refuses
    else:
        if not _prints_back(record, line) and _INEXACT_NUMBER.search(line):
            record = _parse_slow(line)
    if type(record) is not dict:
        raise ValueError(f"a record must be a JSON object, not {type(record).__name__}")
    return record


def _prints_back(value: Any, text: bytes) -> bool:
    """Whether orjson writes ``value`` back as ``text``: then each number is exactly as sent."""
    try:
        return orjson.dumps(value) == text
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        return False


def parse_chunk(lines: Sequence[bytes], *, first_index: int = 0) -> list[dict[str, Any]]:
    """``parse_exact`` for a chunk of lines, with one orjson call (and one compare) when it can.

    Raises ``RecordError`` naming the index of the first bad line (``first_index`` is the index of
    ``lines[0]`` in the caller's chunk).
    """
    joined = b"[" + b",".join(lines) + b"]"
    try:
        records = orjson.loads(joined)
    except orjson.JSONDecodeError:
        records = None  # find and name the bad line below
    if (
        type(records) is list
        and len(records) == len(lines)
        and set(map(type, records)) <= {dict}
        and (_prints_back(records, joined) or not _INEXACT_NUMBER.search(joined))
    ):
        return records
    return [_parse_at(index, line) for index, line in enumerate(lines, start=first_index)]


def _parse_at(index: int, line: bytes) -> dict[str, Any]:
    try:
        return parse_exact(line)
    except ValueError as exc:
        raise RecordError(index, f"line {index + 1} of the chunk is not a valid JSON record: {exc}") from exc


class RecordError(ValueError):
    """A record that cannot be written; ``index`` is its position within the chunk given."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


# ---------------------------------------------------------------------------------------------
# Flattening (the column rules shared with shared/records.py's flattened_keys)


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


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing allocates thousands of dicts that live only until their rows are written: left on, the
    cyclic GC would scan them again and again (a fifth of CSV encoding's time). Reference counting
    still frees them; they hold no cycles. Process-wide, so only the thread that paused it resumes it.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


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
        with _cyclic_gc_paused():
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


def encode_jsonl(lines: Sequence[bytes]) -> bytes:
    """The JSONL text of staged lines, moved as they are: each line and a "\\n"."""
    if not lines:
        return b""
    return b"\n".join(lines) + b"\n"


class GzipStream:
    """One gzip member for one whole file, fed piece by piece (never the whole file in memory)."""

    __slots__ = ("_zlib",)

    def __init__(self, level: int = 6):
        _check_level(level)
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data)

    def finish(self) -> bytes:
        return self._zlib.flush()


class PassThrough:
    """The compressor interface for uncompressed files."""

    __slots__ = ()

    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


def _check_level(level: int) -> None:
    if not 0 <= level <= 9:
        raise ValueError(f"the gzip level must be 0 to 9, not {level}")


def new_compressor(compression: Compression, level: int = 6) -> GzipStream | PassThrough:
    if compression == "gzip":
        return GzipStream(level)
    if compression == "none":
        return PassThrough()
    raise ValueError(f"unknown compression {compression!r}: use 'gzip' or 'none'")


# ---------------------------------------------------------------------------------------------
# Streaming lines and rolling parts


def split_lines(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Complete lines, one list per downloaded chunk, from chunks cut anywhere.

    Lines end with "\\n" (a last line without one still counts); empty lines are dropped; no
    list is empty.
    """
    pieces: list[bytes] = []  # the unfinished line, possibly spread over several chunks
    for chunk in chunks:
        if b"\n" not in chunk:
            if chunk:
                pieces.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pieces:
            pieces.append(lines[0])
            lines[0] = b"".join(pieces)
            pieces = []
        rest = lines.pop()
        if rest:
            pieces.append(rest)
        if not all(lines):
            lines = list(filter(None, lines))
        del chunk  # neither is held while the next chunk downloads
        if lines:
            yield lines
        del lines
    if pieces:
        yield [b"".join(pieces)]


def split_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of ``split_lines``, as one block of bytes per downloaded chunk instead of a list.

    Each block is whole lines, each ending with "\\n" (a last line without one gets it), none
    empty. JSONL export moves staged lines as they are, so it works per chunk, never per line.
    """
    pieces: list[bytes] = []  # the unfinished line, possibly spread over several chunks
    for chunk in chunks:
        end = chunk.rfind(b"\n") + 1
        if not end:
            if chunk:
                pieces.append(chunk)
            continue
        block = chunk[:end]  # the chunk itself when it ends with a newline (no copy)
        if pieces:
            pieces.append(block)
            block, pieces = b"".join(pieces), []
        if end < len(chunk):
            pieces.append(chunk[end:])
        del chunk  # neither is held while the next chunk downloads
        if block := _without_empty_lines(block):
            yield block
        del block
    if pieces and (block := _without_empty_lines(b"".join(pieces) + b"\n")):
        yield block


_EMPTY_LINE = re.compile(rb"\n\n").search  # 2.5 times as fast as `b"\n\n" in block`


def _without_empty_lines(block: bytes) -> bytes:
    if block[:1] != b"\n" and not _EMPTY_LINE(block):
        return block
    return b"".join(line + b"\n" for line in block.split(b"\n") if line)


def cut_block(block: bytes, budget_bytes: int) -> int:
    """The ``take_until`` of a block: where the leading lines that fit in ``budget_bytes`` end.

    At least the first line, so a part always makes progress.
    """
    if len(block) <= budget_bytes:
        return len(block)
    return block.rfind(b"\n", 0, max(budget_bytes, 0)) + 1 or block.index(b"\n") + 1


def take_until(lines: Sequence[bytes], budget_bytes: int) -> int:
    """How many leading lines fit in ``budget_bytes``, each counting its length plus a newline.

    At least 1 when ``lines`` is not empty, so a part always makes progress (passing the budget
    by less than that one line). Exact for JSONL; for CSV the staged size estimates the rows'.
    """
    if not lines:
        return 0
    ends = list(accumulate(map(len, lines)))
    fitting = bisect_right(range(len(ends)), budget_bytes, key=lambda i: ends[i] + i + 1)
    return max(fitting, 1)


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    data: bytes  # bytes ready to upload (compressed when the part is)
    records: int  # records encoded in this chunk
    raw_bytes: int  # uncompressed bytes encoded in this chunk (the CSV header included)


_BACKGROUND_BYTES = 64 * 1024  # smaller pieces cost more to hand over than they take to compress


class PartEncoder:
    """Encodes one part file: the CSV header first, then chunks of staged lines, then the flush.

    The caller rolls to a new part by checking ``raw_bytes`` between chunks (``take_until`` cuts a
    chunk at a line boundary). The ``data`` of the chunks returned by ``feed`` and ``close``, in
    order, is the file.

    A large chunk is gzipped in a helper thread while the caller encodes the next one (zlib lets
    go of the GIL while it deflates), so ``feed`` returns the compressed bytes ready so far, which
    may be those of earlier chunks; ``records`` and ``raw_bytes`` always count this call's lines.
    """

    def __init__(self, fmt: Format, compression: Compression, columns: Sequence[str] | None = None, level: int = 6):
        self._compressor = new_compressor(compression, level)
        self._background = compression == "gzip"
        self._helper: ThreadPoolExecutor | None = None
        self._in_flight: Future[bytes] | None = None
        self._ready: list[bytes] = []  # compressed bytes not handed out yet
        self._csv: CsvEncoder | None = None
        self._records = 0
        self._raw_bytes = 0
        self._unreported_raw = 0  # the CSV header's, reported with the first chunk
        self._closed = False
        if fmt == "csv":
            if columns is None:
                raise ValueError("a CSV part needs its columns")
            self._csv = CsvEncoder(columns)
            header = self._csv.header()
            self._compress(header)
            self._raw_bytes = self._unreported_raw = len(header)
        elif fmt != "jsonl":
            raise ValueError(f"unknown format {fmt!r}: use 'jsonl' or 'csv'")

    @property
    def records(self) -> int:
        return self._records

    @property
    def raw_bytes(self) -> int:
        return self._raw_bytes

    def feed(self, lines: Sequence[bytes]) -> EncodedChunk:
        if self._closed:
            raise RuntimeError("the part is closed")
        if self._csv is None:
            text, count = encode_jsonl(lines), len(lines)
        else:
            text, count = self._csv.encode(lines)
        self._records += count
        self._raw_bytes += len(text)
        self._compress(text)
        return self._hand_out(count, len(text))

    def feed_block(self, block: bytes, records: int) -> EncodedChunk:
        """JSONL only: ``records`` whole staged lines in one block (``split_blocks``), moved as they are."""
        if self._closed:
            raise RuntimeError("the part is closed")
        if self._csv is not None:
            raise ValueError("a CSV part is fed lines, not blocks")
        self._records += records
        self._raw_bytes += len(block)
        self._compress(block)
        return self._hand_out(records, len(block))

    def close(self) -> EncodedChunk:
        if self._closed:
            raise RuntimeError("the part is closed")
        self._closed = True
        self._collect()
        self._ready.append(self._compressor.finish())
        if self._helper is not None:
            self._helper.shutdown()
            self._helper = None
        return self._hand_out(0, 0)

    def _compress(self, text: bytes) -> None:
        self._collect()  # one piece at a time keeps the order and the memory bounded
        if self._background and len(text) >= _BACKGROUND_BYTES:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gzip")
            self._in_flight = self._helper.submit(self._compressor.compress, text)
        else:
            self._ready.append(self._compressor.compress(text))

    def _collect(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._ready.append(future.result())

    def _hand_out(self, records: int, raw_bytes: int) -> EncodedChunk:
        data = b"".join(self._ready)
        self._ready.clear()
        raw_bytes, self._unreported_raw = raw_bytes + self._unreported_raw, 0
        return EncodedChunk(data, records, raw_bytes)
