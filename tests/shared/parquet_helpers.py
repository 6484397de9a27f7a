"""Reading typed Parquet back under the written rules (docs/formats.md): what each posted record should read as,
and what a file's rows do read as, so that tests compare the two."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import ContainerClient

from shared.formats.exact_json import JsonNumber, json_text
from shared.formats.flatten import flattened_items

CORE = {"_event_name", "_event_time", "_identity", "_insert_id", "_exported_at", "_rest_json", "properties"}


class Text(str):
    """A value read back as its JSON text (a json column, a companion column, the rest): compared as text."""


def exact_loads(text: str) -> Any:
    return json.loads(text, parse_float=JsonNumber, parse_int=int)


def number_equal(read: Any, posted: Any) -> bool:
    """A double read back against the number posted: the same number (a JsonNumber is its literal)."""
    if isinstance(posted, JsonNumber):
        return Decimal(repr(read)) == Decimal(str.__str__(posted))
    return bool(read == posted) and not (isinstance(read, float) and math.isnan(read))


def table_of(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


@dataclass
class Row:
    """A row read back: its core columns by name, its fields by flattened key (a json column's value and a
    companion's as Text), and its rest as (key, Text) pairs; nulls left out."""

    core: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    rest: list[tuple[str, Text]] = field(default_factory=list)


def rows_read(table: pa.Table) -> list[Row]:
    """Each row of a file, by the file's own field metadata (`field`, `type`, `companion_of`)."""
    meta = {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()} for f in table.schema}
    out = []
    for values in table.to_pylist():
        row = Row()
        for column, value in values.items():
            if value is None:
                continue
            found = meta[column]
            if "field" not in found:
                if column == "_rest_json":
                    row.rest = [(key, Text(json_text(item))) for key, item in exact_loads(value)]
                else:
                    row.core[column] = value
            elif "companion_of" in found or found["type"] == "json":
                row.fields[found["field"]] = Text(value)
            else:
                row.fields[found["field"]] = value
        out.append(row)
    return out


def expected_row(record: dict[str, Any], types: dict[str, str]) -> Row:
    """What a posted record should read back as under the rules, given each field's column type in the
    destination's schema (`types`, by flattened key; a field absent from it has no column: it is in the rest, as
    a field repeating an earlier one's column is). Nulls are left out."""
    row = Row()
    seen: set[str] = set()  # the first field of a name takes its column, even when it is null
    for key, value in flattened_items(record):
        first = key not in seen
        seen.add(key)
        if value is None:
            continue
        if not first or key not in types:
            row.rest.append((key, Text(json_text(value))))
        else:
            row.fields[key] = _expected_value(value, types[key])
    return row


def _expected_value(value: Any, column_type: str) -> Any:
    cls = type(value)
    if column_type == "json":
        return Text(json_text(value))
    if column_type == "string":
        return value if cls is str else Text(json_text(value))
    if column_type == "bool":
        return value if cls is bool else Text(json_text(value))
    if column_type == "int64":
        return value if cls is int and -(2**63) <= value < 2**63 else Text(json_text(value))
    # float64: the number, when a double is exactly it
    if cls is float or (cls is int and abs(value) <= 2**53):
        return value
    if cls is JsonNumber:
        number = float(value)
        if math.isfinite(number) and Decimal(repr(number)) == Decimal(str.__str__(value)):
            return value
    return Text(json_text(value))


def differences(row: Row, wanted: Row) -> list[str]:
    """A row read back against the expected one (numbers by value: a double against its posted text); each
    difference in words, none when they agree."""
    read, expected = row.fields, wanted.fields
    found = [f"rest: read {row.rest}, posted {wanted.rest}"] if sorted(row.rest) != sorted(wanted.rest) else []
    found += [f"{key}: missing" for key in expected.keys() - read.keys()]
    found += [f"{key}: not posted, read {read[key]!r}" for key in read.keys() - expected.keys()]
    for key in expected.keys() & read.keys():
        want, got = expected[key], read[key]
        if isinstance(want, int | float | JsonNumber) and not isinstance(want, bool):
            same = not isinstance(got, str | bool) and number_equal(got, want)
        else:
            same = got == want and type(got) is type(want)
        if not same:
            found.append(f"{key}: posted {want!r}, read {got!r}")
    return found


def download_tree(container: ContainerClient, root: Path, prefix: str = "") -> list[Path]:
    """Every blob under `prefix`, as files under `root` with the same relative names (what a reader syncs)."""
    written = []
    for blob in container.list_blobs(name_starts_with=prefix):
        path = root / blob.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(container.download_blob(blob.name).readall())
        written.append(path)
    return written
