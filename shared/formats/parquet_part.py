"""One Parquet part file: staged records in, a Parquet file out (pyarrow), with the core columns first.

`parquet_columns` "typed": each field in a typed column of the destination's schema (``parquet_schema``, whose
types are fixed when first seen through ``SchemaAccess``, I/O the caller provides); "json": the record's JSON text
in one ``properties`` column, a schema that never changes. Both start with the core columns (``CORE_COLUMNS``),
found by the rules intake follows (``record_fields``).

A part is held in memory as Arrow arrays while it is fed (about half its JSON size: the keys are not repeated, a
number is 8 bytes) and written at ``close``: a Parquet file's columns are only known once its last record is in.
``PART_MAX_BYTES`` of staged records bounds it, as it bounds any part. Row groups hold ``ROW_GROUP_ROWS`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from shared.formats.exact_json import RecordError, json_text, parse_chunk
from shared.formats.gc_pause import cyclic_gc_paused
from shared.formats.parquet_columns import chunk_columns, move_to_rest
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
    SchemaRequest,
    TypedSchema,
    proposals,
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

# Rows a row group holds. DuckDB reads a file a row group per thread and its own files hold 122,880 rows a group;
# Spark and Synapse split files by row group too, and want groups of tens of MB or more: 131,072 rows (a
# multiple of DuckDB's 2,048-row vectors) of this service's events are 20-40 MB of data before compression. A
# smaller file is one row group.
ROW_GROUP_ROWS = 131_072
ZSTD_LEVEL = 3  # zstd's own default: 1 is about as fast here and makes larger files
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
        self._chunks: list[tuple[int, dict[str, pa.Array]]] = []  # (rows, arrays by column)
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
            parsed = list(records) if records is not None else parse_chunk(lines)
            arrays = self._core(parsed, names, times)
            if self.mode == "json":
                arrays[PROPERTIES] = pa.array(lines, pa.string())
            else:
                arrays.update(self._typed(parsed))
        self._chunks.append((len(lines), arrays))
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

    def _core(self, records: Sequence[dict[str, Any]], names: Sequence[str | None] | None,
              times: Sequence[int] | None) -> dict[str, pa.Array]:
        if self.record_type == "profiles":
            return {IDENTITY: pa.array(list(map(find_profile_identity, records)), pa.string()),
                    EXPORTED_AT: pa.repeat(pa.scalar(self._exported_us, TIMESTAMP), len(records))}
        if names is None:
            names = list(map(find_event_name, records))
        if times is None:
            times = [_event_time(index, record) for index, record in enumerate(records)]
        return {EVENT_NAME: pa.array(names, pa.string()), EVENT_TIME: pa.array(times, TIMESTAMP),
                IDENTITY: pa.array(list(map(find_profile_identity, records)), pa.string()),
                INSERT_ID: pa.array(list(map(find_insert_id, records)), pa.string())}

    def _typed(self, records: Sequence[dict[str, Any]]) -> dict[str, pa.Array]:
        assert self._schema is not None
        columns, rest = chunk_columns(records)
        schema = self._schema.current()
        wanted = proposals(columns, schema)
        if wanted:
            schema = self._schema.settle(SchemaRequest(new_fields=wanted))
        move_to_rest(columns, [key for key in columns if key not in schema.fields], rest)
        arrays: dict[str, pa.Array] = {}
        spilled: dict[str, list[str | None]] = {}
        for key, values in columns.items():
            spec = schema.fields[key]
            arrays[spec.column], companion = typed_column(values, spec.type)
            self._note(spec.column, ARROW_TYPES[spec.type], {"field": key, "type": spec.type})
            if companion is not None:
                spilled[key] = companion
        if any(schema.fields[key].companion is None for key in spilled):
            schema = self._schema.settle(SchemaRequest(companions=frozenset(spilled)))
        for key, texts in spilled.items():
            spec = schema.fields[key]
            assert spec.companion is not None
            arrays[spec.companion] = pa.array(texts, pa.string())
            self._note(spec.companion, pa.string(), {"field": key, "type": "json", "companion_of": spec.column})
        if any(item is not None for item in rest):
            arrays[REST] = pa.array([None if item is None else json_text(item) for item in rest], pa.string())
        return arrays

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


def _event_time(index: int, record: dict[str, Any]) -> int:
    try:
        return event_microseconds(record)
    except EventTimeError as exc:
        raise RecordError(index, f"record {index + 1} of the chunk: the event time {exc}") from None
