"""The fast path of a typed Parquet part: staged lines read by Arrow's JSON reader (C++, on threads, no Python object
per value) wherever Arrow reads them exactly as the record-by-record path would (pure).

Arrow's reader infers a type per field and reads numbers as 64-bit integers and doubles, so the path is taken only
where that changes nothing the rules keep:

- a line whose text holds a number Arrow could alter is read record by record: 16 or more digits (beyond a
  double's exact integers), an exponent, a decimal ending in 0 ("1.50"), or a tiny one ("0.00001"); so is a line
  holding an empty object (Arrow cannot tell ``{}`` from an object whose fields are all null);
- the whole chunk is read record by record when Arrow refuses it (a field whose values change kind, a key twice
  in an object), infers a date or time (it would lose the text), finds objects inside a list (it would add their
  missing keys), or flattens two fields to one column.

Lists become their JSON text from the values Arrow read (exactly the text sent, given the first rule). A double
column can hold what was sent as an integer: it is used only where the destination's type is float64.
"""

from __future__ import annotations

import io
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from shared.formats.exact_json import json_text
from shared.formats.flatten import nested_prefix
from shared.formats.parquet_schema import ColumnType
from shared.formats.record_fields import (
    BLANK,
    IDENTITY_CHAIN,
    INSERT_ID_CHAIN,
    NAME_CHAIN,
    TIME_CHAIN,
    EventTimeError,
    Path,
    epoch_microseconds,
)

# A line is read record by record when its text holds a JSON number Arrow could read otherwise than the rules
# keep it, or an empty object; `lines_for_records` finds them with C-level scans only (bytes.translate, regular
# expressions that start with a literal), at about 1 µs a line. Text inside a string can look like such a
# number: that line only takes the record-by-record path. RECORD_BY_RECORD says the same as one expression (the
# tests check that every line it matches is found); Python's engine scans it at a tenth of the speed.
RECORD_BY_RECORD = (rb"[:,\[][ \t\r\n]*-?(?:[0-9.]{16,}|[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+|[0-9]+\.[0-9]+0"
                    rb"|0\.0000[0-9]*)[ \t\r\n]*(?:[,}\]]|$)|\{[ \t\r\n]*\}")
# Long numbers and exponents are found in the text's shapes: digits and dots are "0", "E" is "e", a sign "+", the
# bytes that end a value ("," "}" "]") "}", blanks " ". Each pattern starts with a literal, which the engine looks
# for in C, and checks in C what follows (a hexadecimal id's "1e5" is followed by more of the id, not by the end of
# a value): a value's end is enough, as a line is an object (its last value is followed by "}").
_SHAPES = bytes.maketrans(b"0123456789.Ee-+,}]\t\r", b"00000000000ee++}}}  ")
_SHAPE_SCANS = (re.compile(rb"0000000000000000 *}"),  # 16 digits or more: beyond a double's exact integers
                re.compile(rb"0e\+?0+ *}"))  # an exponent
_MAX_BLOCK_BYTES = 16 << 20
_SCANS = (re.compile(rb"\.[0-9]+0[ \t\r\n]*[,}\]]"),  # a decimal ending in 0, such as 1.50
          re.compile(rb"0\.0000"),  # a tiny decimal, which a double prints with an exponent
          re.compile(rb"\{[ \t\r\n]*\}"))  # an empty object


def lines_for_records(lines: Sequence[bytes], joined: bytes) -> list[int]:
    """The indexes of `lines` (`joined` is them joined by newlines) that the record-by-record path must read."""
    shapes = joined.translate(_SHAPES)
    places = [found.start() for scan in _SHAPE_SCANS for found in scan.finditer(shapes)]
    places += [found.start() for scan in _SCANS for found in scan.finditer(joined)]
    if not places:
        return []
    ends = list(accumulate(len(line) + 1 for line in lines))
    return sorted({bisect_right(ends, place) for place in places})


class NotExact(Exception):
    """Arrow's reading of the chunk would not be exact: the chunk is read record by record."""


@dataclass
class ArrowRead:
    """The chunk's lines Arrow read (`rows`, their indexes in the chunk), its fields by flattened key, and the
    indexes of the lines left for the record-by-record path."""

    rows: list[int]
    table: pa.Table
    leaves: dict[str, pa.Array]
    others: list[int]


def read_chunk(lines: Sequence[bytes]) -> ArrowRead | None:
    """Arrow's reading of the lines it reads exactly; None when none of the chunk can be read that way."""
    joined = b"\n".join(lines)
    others = lines_for_records(lines, joined)
    if len(others) == len(lines):
        return None
    rows = list(range(len(lines)))
    text = joined
    if others:
        left = set(others)
        rows = [index for index in rows if index not in left]
        text = b"\n".join(lines[index] for index in rows)
    # One block for a chunk of up to 16 MB (a chunk is a downloaded chunk's lines at most, 8 MB): Arrow reads a
    # column of several blocks as several arrays, which `flattened_leaves` copies into one; 8% less CPU than 1 MB.
    block = len(text) + 1 if len(text) < _MAX_BLOCK_BYTES else max(_MAX_BLOCK_BYTES, 2 * max(map(len, lines)))
    try:
        table = pj.read_json(io.BytesIO(text), read_options=pj.ReadOptions(use_threads=False, block_size=block))
        leaves = flattened_leaves(table)
    except (pa.ArrowException, NotExact):  # Arrow refused it, or would not read it exactly
        return None
    return ArrowRead(rows, table, leaves, others)


def flattened_leaves(table: pa.Table) -> dict[str, pa.Array]:
    """The table's fields by flattened key (``shared.formats.flatten``); NotExact for what Arrow read otherwise."""
    out: dict[str, pa.Array] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        _leaves(column.combine_chunks(), field.name, out)
    return out


def _leaves(array: pa.Array, name: str, out: dict[str, pa.Array]) -> None:
    kind = array.type
    if pa.types.is_struct(kind):
        if kind.num_fields == 0:
            raise NotExact  # an empty object
        prefix = nested_prefix("", name)
        for field, child in zip(kind, array.flatten(), strict=True):
            _leaves(child, prefix + field.name, out)
        return
    if not _plain(kind):
        raise NotExact
    if name in out:
        raise NotExact  # two fields, one column: the record-by-record path keeps the later in the rest
    out[name] = array


def _plain(kind: pa.DataType) -> bool:
    """A type Arrow reads exactly: strings, 64-bit integers, doubles, booleans, nulls, and lists of those."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _plain(kind.value_type)
    return bool(pa.types.is_string(kind) or pa.types.is_int64(kind) or pa.types.is_float64(kind)
                or pa.types.is_boolean(kind) or pa.types.is_null(kind))


def arrow_kind(array: pa.Array) -> ColumnType | None:
    """The column type an Arrow column's values propose (as ``parquet_schema.decide_type`` would): None when all
    are null."""
    kind = array.type
    if pa.types.is_null(kind) or array.null_count == len(array):
        return None
    if pa.types.is_string(kind):
        return "string"
    if pa.types.is_int64(kind):
        return "int64"
    if pa.types.is_float64(kind):
        return "float64"
    if pa.types.is_boolean(kind):
        return "bool"
    return "json"


def typed_arrow(array: pa.Array, column_type: ColumnType,
                arrow_type: pa.DataType) -> tuple[pa.Array, list[str | None] | None]:
    """`array` in a column of `column_type` (Arrow type `arrow_type`) and its companion texts, as
    ``parquet_values.typed_column`` would give them; NotExact where only the text sent could tell."""
    kind = arrow_kind(array)
    if kind is None:
        return pa.nulls(len(array), arrow_type), None
    if kind == column_type:
        if kind == "json":
            return pa.array(_texts(array), arrow_type), None
        return array, None
    if kind == "int64" and column_type == "float64":  # at most 15 digits (RECORD_BY_RECORD): exact as doubles
        return array.cast(pa.float64()), None
    if kind == "float64":
        raise NotExact  # a double may have been sent as an integer, which another type holds
    texts = _texts(array)
    if column_type == "json":
        return pa.array(texts, arrow_type), None
    return pa.nulls(len(array), arrow_type), texts


def _texts(array: pa.Array) -> list[str | None]:
    return [None if value is None else json_text(value) for value in array.to_pylist()]


# ---------------------------------------------------------------------------------------------
# Core columns, by the rules of ``record_fields`` over Arrow's columns, in C (``pyarrow.compute``): 0.08 s for
# 200,000 bench events where the same rules over Python values cost 0.19 s


def core_values(read: ArrowRead, record_type: str) -> dict[str, pa.Array]:
    """The core columns' values of Arrow's rows: the event name, time (epoch microseconds), identity and insert
    id of events; the identity of profiles."""
    columns = PathColumns(read.table)
    if record_type == "profiles":
        return {"identity": first_text(columns, IDENTITY_CHAIN, integers=True)}
    return {"name": first_text(columns, NAME_CHAIN, integers=False),
            "time": first_time(columns),
            "identity": first_text(columns, IDENTITY_CHAIN, integers=True),
            "insert_id": first_text(columns, INSERT_ID_CHAIN, integers=True)}


class PathColumns:
    """A table's column at each path (a top-level key, or a key inside a top-level object), null where a row lacks
    it: each top-level column combined, and each object's fields taken apart, once for all chains."""

    def __init__(self, table: pa.Table):
        self.rows = table.num_rows
        self._table = table
        self._names = set(table.column_names)
        self._top: dict[str, pa.Array] = {}
        self._fields: dict[str, list[pa.Array]] = {}

    def at(self, path: Path) -> pa.Array | None:
        """The column at `path`; None when no row has it (absent, or null in every row)."""
        name = path[0]
        if name not in self._names:
            return None
        array = self._top.get(name)
        if array is None:
            array = self._top[name] = self._table.column(name).combine_chunks()
        if len(path) > 1:
            index = array.type.get_field_index(path[1]) if pa.types.is_struct(array.type) else -1
            if index < 0:
                return None
            fields = self._fields.get(name)
            if fields is None:
                fields = self._fields[name] = array.flatten()  # each null where the object is
            array = fields[index]
        return None if pa.types.is_null(array.type) else array

    def chain(self, chain: tuple[Path, ...]) -> list[pa.Array]:
        """The columns of `chain`'s paths that some row has, in chain order."""
        found = map(self.at, chain)
        return [array for array in found if array is not None]


def first_text(columns: PathColumns, chain: tuple[Path, ...], *, integers: bool) -> pa.Array:
    """For each row, the first value of `chain` that ``name_text`` (``identity_text`` with `integers`) takes:
    a non-blank string, or (`integers`) an integer as its decimal text; null where none."""
    taken = [_text_taken(array, integers=integers) for array in columns.chain(chain)]
    return _coalesced([array for array in taken if array is not None], columns.rows, pa.string())


def _text_taken(array: pa.Array, *, integers: bool) -> pa.Array | None:
    """`array`'s values a text rule takes (the others null); None when it takes none.

    With `integers` (an identity or an insert id, where an integer counts and a decimal does not): NotExact for a
    column of doubles, where Arrow may have read an integer the record sent as a double (it does, when a field's
    values in the chunk are integers and decimals)."""
    kind = array.type
    if pa.types.is_string(kind):
        return pc.if_else(pc.match_substring_regex(array, BLANK), pa.scalar(None, pa.string()), array)
    if integers and pa.types.is_int64(kind):
        return pc.cast(array, pa.string())  # the decimal text, as str(int)
    if integers and pa.types.is_floating(kind):
        raise NotExact
    return None  # booleans, doubles (names), lists, objects: never taken


def first_time(columns: PathColumns) -> pa.Array:
    """For each row, the first non-null value of the time chain in epoch microseconds (int64); NotExact when a
    row has none or one is not a usable time (the record-by-record path names the record).

    Each column's values are converted once per distinct value (events share their times), only at the rows where
    the column is the first with a value: a later field is never read, as ``find_event_time`` never reads it."""
    converted: list[pa.Array] = []
    earlier: pa.Array | None = None  # the rows an earlier column has a value at
    for array in columns.chain(TIME_CHAIN):
        if array.null_count == len(array):
            continue
        valid = pc.is_valid(array)
        if earlier is not None:
            array = pc.if_else(earlier, pa.scalar(None, array.type), array)
        if array.null_count < len(array):
            if not (pa.types.is_string(array.type) or pa.types.is_int64(array.type)
                    or pa.types.is_float64(array.type)):
                raise NotExact  # a boolean, list or object: no time
            encoded = array.dictionary_encode()
            try:
                micros = [epoch_microseconds(value) for value in encoded.dictionary.to_pylist()]
            except EventTimeError:
                raise NotExact from None
            converted.append(pa.array(micros, pa.int64()).take(encoded.indices))
        earlier = valid if earlier is None else pc.or_(earlier, valid)
    times = _coalesced(converted, columns.rows, pa.int64())
    if times.null_count:
        raise NotExact  # an event without a time
    return times


def _coalesced(arrays: list[pa.Array], count: int, kind: pa.DataType) -> pa.Array:
    if not arrays:
        return pa.nulls(count, kind)
    return arrays[0] if len(arrays) == 1 else pc.coalesce(*arrays)
