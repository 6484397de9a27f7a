"""One Parquet part file: staged records in, a Parquet file out (pyarrow), with the core columns first.

`parquet_columns` "typed": each field in a typed column of the destination's schema (``parquet_schema``, whose
types are fixed when first seen through ``SchemaAccess``, I/O the caller provides); "json": the record's JSON text
in one ``properties`` column, a schema that never changes. Both start with the core columns (``CORE_COLUMNS``),
found by the rules intake follows (``record_fields``).

A part is held in memory as Arrow arrays while it is fed (about half its JSON size: the keys are not repeated, a
number is 8 bytes) and written at ``close``: a Parquet file's columns are only known once its last record is in.
``PART_MAX_BYTES`` of staged records bounds it, as it bounds any part. Row groups hold ``ROW_GROUP_ROWS`` rows.

Memory: ``parquet_arrow`` finds the core columns with ``pyarrow.compute`` functions, whose first call sets up
Arrow's function registry: 17 MB of a worker's memory for good, without numpy (a process's RSS is 49 MB once
``pyarrow.parquet`` and ``pyarrow.json`` are imported, 66 MB after the first calls). The Arrow arrays a part holds
are the same size either way (54 MB for 200,000 bench events), but the bench worker's peak grew with it: one batch
of 100,000 events 212 MB against 203 MB, of 200,000 events 239 MB against 210 MB (under the 300 MB target).

Arrow allocates from the C library's allocator (``system_memory_pool``), not the mimalloc its wheel bundles and
defaults to: mimalloc kept what each export thread had freed for that thread, and the Parquet pass's peak RSS in
``make bench`` sat on its 300 MB target (279-310 MB, two batches exported at once); with the system allocator
221-235 MB, and one batch of 1,000,000 events 217-222 MB against 258-259 MB, at the same speed or better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from shared.formats.exact_json import RecordError, json_text, parse_chunk
from shared.formats.gc_pause import cyclic_gc_paused
from shared.formats.parquet_arrow import ArrowRead, NotExact, arrow_kind, core_values, read_chunk, typed_arrow
from shared.formats.parquet_columns import Rest, chunk_columns, move_to_rest
from shared.formats.parquet_schema import (
    CORE_COLUMNS,
    EVENT_NAME,
    EVENT_TIME,
    EXPORTED_AT,
    IDENTITY,
    INSERT_ID,
    PROPERTIES,
    REST,
    ColumnsMode,
    ColumnType,
    SchemaRequest,
    TypedSchema,
    proposals,
    value_kinds,
)
from shared.formats.parquet_values import ARROW_TYPES, typed_column
from shared.formats.record_fields import (
    EventTimeError,
    event_microseconds,
    find_event_name,
    find_insert_id,
    find_profile_identity,
)
from shared.formats.serialization import EncodedChunk, take_until

pa.set_memory_pool(pa.system_memory_pool())  # once, when a destination first writes Parquet (module doc)

# Rows a row group holds. DuckDB reads a file a row group per thread and its own files hold 122,880 rows a group;
# Spark and Synapse split files by row group too, and want groups of tens of MB or more: 131,072 rows (a
# multiple of DuckDB's 2,048-row vectors) of this service's events are 20-40 MB of data before compression. A
# smaller file is one row group.
ROW_GROUP_ROWS = 131_072
Chunk = tuple[int, dict[str, pa.Array]]  # rows, and their arrays by column
Values: TypeAlias = "Sequence[Any] | pa.Array"  # a column's values, as Python's or as an Arrow array
# Level 1, not zstd's default 3: on 200,000 bench events the files are 8% smaller (5.15 MB against 5.61 MB, as
# measured) and writing them costs 0.03 s less CPU (0.185 s against 0.215 s for the Parquet writer alone, the
# least of five runs).
ZSTD_LEVEL = 1
CODECS = {"zstd": "zstd", "snappy": "snappy", "gzip": "gzip", "none": "none"}
TIMESTAMP = pa.timestamp("us", tz="UTC")
_CORE_TYPES: dict[str, pa.DataType] = {
    EVENT_NAME: pa.string(), EVENT_TIME: TIMESTAMP, IDENTITY: pa.string(), INSERT_ID: pa.string(),
    EXPORTED_AT: TIMESTAMP, REST: pa.string(), PROPERTIES: pa.string(),
}


class SchemaAccess(Protocol):
    """The destination's typed schema for one record type, kept by the caller (in control storage)."""

    def current(self) -> TypedSchema: ...

    def settle(self, request: SchemaRequest) -> TypedSchema:
        """Fix what `request` asks (types already fixed stay as they are) and return the schema as it now is."""
        ...


class ParquetPart:
    """Encodes one Parquet part: ``feed`` chunks of staged lines (or their parsed records), then ``close``."""

    def __init__(self, record_type: str, mode: ColumnsMode, compression: str, *, exported_at: datetime,
                 schema: SchemaAccess | None = None):
        if mode == "typed" and schema is None:
            raise ValueError("a typed Parquet part needs the destination's schema")
        if compression not in CODECS:
            raise ValueError(f"unknown Parquet compression {compression!r}: use one of {', '.join(CODECS)}")
        self.record_type, self.mode, self.compression = record_type, mode, compression
        self._schema = schema
        self._exported_us = int(exported_at.timestamp() * 1_000_000)
        self._chunks: list[Chunk] = []
        self._fields: dict[str, dict[str, str]] = {}  # column -> its field metadata (the key, type, companion of)
        self._types: dict[str, pa.DataType] = dict(_CORE_TYPES)
        self._records = 0
        self._raw_bytes = 0
        self._closed = False

    @property
    def records(self) -> int:
        return self._records

    @property
    def raw_bytes(self) -> int:
        return self._raw_bytes

    def lines_within(self, lines: Sequence[bytes], budget_bytes: int) -> int:
        """How many leading staged lines to feed for the part's staged bytes to grow by at most `budget_bytes`."""
        return take_until(lines, budget_bytes)

    def feed(self, lines: Sequence[bytes], records: Sequence[dict[str, Any]] | None = None,
             names: Sequence[str | None] | None = None, times: Sequence[int] | None = None) -> EncodedChunk:
        """Add staged `lines` (their parsed `records` when the caller has them, and, when it changed the records,
        their event `names` and `times` in epoch microseconds, found before). Nothing is written until `close`."""
        if self._closed:
            raise RuntimeError("the part is closed")
        if not lines:
            return EncodedChunk(b"", 0, 0)
        with cyclic_gc_paused():
            self._chunks.extend(self._encode(lines, records, names, times))
        raw = sum(map(len, lines)) + len(lines)
        self._records += len(lines)
        self._raw_bytes += raw
        return EncodedChunk(b"", len(lines), raw)

    def close(self) -> EncodedChunk:
        """The whole Parquet file."""
        if self._closed:
            raise RuntimeError("the part is closed")
        self._closed = True
        table = self._table()
        self._chunks.clear()
        sink = pa.BufferOutputStream()
        codec = CODECS[self.compression]
        with pq.ParquetWriter(sink, table.schema, compression=codec,
                              compression_level=ZSTD_LEVEL if codec == "zstd" else None) as writer:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        del table
        return EncodedChunk(sink.getvalue().to_pybytes(), 0, 0)

    # -----------------------------------------------------------------------------------------

    def _encode(self, lines: Sequence[bytes], records: Sequence[dict[str, Any]] | None,
                names: Sequence[str | None] | None, times: Sequence[int] | None) -> list[Chunk]:
        """The chunk's columns, in one or more pieces of consecutive rows: read by Arrow where it reads exactly
        (``parquet_arrow``), else record by record."""
        if records is None:
            read = read_chunk(lines)
            if read is not None:
                try:
                    return self._encode_read(lines, read)
                except (NotExact, pa.ArrowException):
                    pass
            records = parse_chunk(lines)
        core = self._core(records, names, times)
        typed = self._typed([(len(records), *chunk_columns(records))])
        return [(len(lines), {**core, **(typed[0] if typed else {PROPERTIES: pa.array(lines, pa.string())})})]

    def _encode_read(self, lines: Sequence[bytes], read: ArrowRead) -> list[Chunk]:
        """Arrow's rows and the lines it left, read record by record, as pieces in the order of `lines`."""
        others = [lines[index] for index in read.others]
        records = parse_chunk(others) if others else []
        values = core_values(read, self.record_type)
        fast = self._core_of(len(read.rows), values.get("name"), values.get("time"), values["identity"],
                             values.get("insert_id"))
        slow = self._core(records, None, None) if others else {}
        if self.mode == "json":
            fast[PROPERTIES] = pa.array([lines[index] for index in read.rows], pa.string())
            if others:
                slow[PROPERTIES] = pa.array(others, pa.string())
        else:
            sources: list[tuple[int, Mapping[str, Any], list[Rest | None]]] = [
                (len(read.rows), read.leaves, [None] * len(read.rows))]
            if others:
                sources.append((len(others), *chunk_columns(records)))
            typed = self._typed(sources)
            fast.update(typed[0])
            if others:
                slow.update(typed[1])
        if not others:
            return [(len(lines), fast)]
        return _in_order([(read.rows, fast), (read.others, slow)])

    def _core(self, records: Sequence[dict[str, Any]], names: Sequence[str | None] | None,
              times: Sequence[int] | None) -> dict[str, pa.Array]:
        if self.record_type == "profiles":
            return self._core_of(len(records), None, None, list(map(find_profile_identity, records)), None)
        if names is None:
            names = list(map(find_event_name, records))
        if times is None:
            times = [_event_time(index, record) for index, record in enumerate(records)]
        return self._core_of(len(records), names, times, list(map(find_profile_identity, records)),
                             list(map(find_insert_id, records)))

    def _core_of(self, count: int, names: Values | None, times: Values | None, identities: Values,
                 insert_ids: Values | None) -> dict[str, pa.Array]:
        """The core columns of `count` rows from their values (Python's, or Arrow's: ``core_values``); `times` in
        epoch microseconds."""
        if self.record_type == "profiles":
            return {IDENTITY: _array(identities, pa.string()),
                    EXPORTED_AT: pa.repeat(pa.scalar(self._exported_us, TIMESTAMP), count)}
        return {EVENT_NAME: _array(names, pa.string()), EVENT_TIME: _array(times, TIMESTAMP),
                IDENTITY: _array(identities, pa.string()), INSERT_ID: _array(insert_ids, pa.string())}

    def _typed(self, sources: list[tuple[int, Mapping[str, Any], list[Rest | None]]]) -> list[dict[str, pa.Array]]:
        """Each source's typed columns (a source: its row count, its fields' values by flattened key, as Python
        lists or Arrow arrays, and each row's rest). The fields' types are settled for all sources at once.
        Empty in "json" mode."""
        if self.mode == "json":
            return []
        assert self._schema is not None
        schema = self._schema.current()
        kinds: dict[str, set[ColumnType]] = {}
        for _, columns, _ in sources:
            for key, values in columns.items():
                if key not in schema.fields:
                    found = kinds.setdefault(key, set())
                    if isinstance(values, pa.Array):
                        kind = arrow_kind(values)
                        found.update(() if kind is None else (kind,))
                    else:
                        found.update(value_kinds(values))
        wanted = proposals(kinds, schema)
        if wanted:
            schema = self._schema.settle(SchemaRequest(new_fields=wanted))
        out: list[dict[str, pa.Array]] = []
        spilled: list[dict[str, list[str | None]]] = []
        for _, columns, rest in sources:
            arrays, texts = self._convert(schema, columns, rest)
            out.append(arrays)
            spilled.append(texts)
        needing = {key for texts in spilled for key in texts if schema.fields[key].companion is None}
        if needing:
            schema = self._schema.settle(SchemaRequest(companions=frozenset(needing)))
        for arrays, texts in zip(out, spilled, strict=True):
            for key, companion in texts.items():
                spec = schema.fields[key]
                assert spec.companion is not None
                arrays[spec.companion] = pa.array(companion, pa.string())
                self._note(spec.companion, pa.string(), {"field": key, "type": "json", "companion_of": spec.column})
        return out

    def _convert(self, schema: TypedSchema, columns: Mapping[str, Any],
                 rest: list[Rest | None]) -> tuple[dict[str, pa.Array], dict[str, list[str | None]]]:
        """One source's typed columns, and the companion texts of the fields some of whose values their type
        does not hold."""
        homeless = [key for key in columns if key not in schema.fields]
        if any(isinstance(columns[key], pa.Array) and arrow_kind(columns[key]) is not None for key in homeless):
            raise NotExact  # values without a column of their own: the rest is written record by record
        if homeless:
            assert isinstance(columns, dict)  # the record-by-record path's columns (Arrow's were checked above)
            move_to_rest(columns, [key for key in homeless if not isinstance(columns[key], pa.Array)], rest)
        arrays: dict[str, pa.Array] = {}
        spilled: dict[str, list[str | None]] = {}
        for key, values in columns.items():
            spec = schema.fields.get(key)
            if spec is None:
                continue  # all null: nothing to keep

            arrow_type = ARROW_TYPES[spec.type]
            if isinstance(values, pa.Array):
                arrays[spec.column], companion = typed_arrow(values, spec.type, arrow_type)
            else:
                arrays[spec.column], companion = typed_column(values, spec.type)
            self._note(spec.column, arrow_type, {"field": key, "type": spec.type})
            if companion is not None:
                spilled[key] = companion
        if rest.count(None) < len(rest):  # in C: Arrow's rows have no rest
            arrays[REST] = pa.array([None if item is None else json_text(item) for item in rest], pa.string())
        return arrays, spilled

    def _note(self, column: str, arrow_type: pa.DataType, metadata: dict[str, str]) -> None:
        if column not in self._fields:
            self._fields[column] = metadata
            self._types[column] = arrow_type

    def _table(self) -> pa.Table:
        present = {column for _, arrays in self._chunks for column, array in arrays.items()
                   if array.null_count < len(array)}
        ordered = [*CORE_COLUMNS[self.record_type], *(c for c in (REST, PROPERTIES) if c in present)]
        companion_of = {column: meta.get("companion_of") for column, meta in self._fields.items()}
        by_field = sorted((c for c in self._fields if c in present and companion_of[c] is None), key=str.lower)
        companions = {companion_of[c]: c for c in self._fields if c in present and companion_of[c] is not None}
        for column in by_field:
            ordered.append(column)
            if column in companions:
                ordered.append(companions.pop(column))
        ordered.extend(sorted(companions.values(), key=str.lower))  # a companion whose column is all null here
        fields = [pa.field(column, self._types[column], metadata=self._fields.get(column)) for column in ordered]
        arrays = [pa.chunked_array([arrays[column] if column in arrays else pa.nulls(rows, self._types[column])
                                    for rows, arrays in self._chunks], self._types[column]) for column in ordered]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _array(values: Values | None, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.view(kind) if values.type != kind else values  # epoch microseconds as a timestamp: no copy
    return pa.array(values, kind)


def _event_time(index: int, record: dict[str, Any]) -> int:
    try:
        return event_microseconds(record)
    except EventTimeError as exc:
        raise RecordError(index, f"record {index + 1} of the chunk: the event time {exc}") from None


def _in_order(parts: list[tuple[list[int], dict[str, pa.Array]]]) -> list[Chunk]:
    """The rows of `parts` (each: the chunk's rows at those indexes, ascending, and their arrays) as pieces of
    consecutive rows in the chunk's order: slices, never a copy."""
    owner = sorted((index, part, place) for part, (rows, _) in enumerate(parts) for place, index in enumerate(rows))
    pieces: list[Chunk] = []
    start = 0
    while start < len(owner):
        part, first = owner[start][1], owner[start][2]
        end = start
        while end + 1 < len(owner) and owner[end + 1][1] == part:
            end += 1
        count = end - start + 1
        pieces.append((count, {column: array.slice(first, count) for column, array in parts[part][1].items()}))
        start = end + 1
    return pieces
