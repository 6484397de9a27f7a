"""A typed Parquet destination's schema: which column each record field lands in, with which type, fixed for the
destination when the field is first seen (pure; `shared.control.destination_schemas` keeps it in control storage).

The rules (docs/formats.md says them for customers):

- a field is a flattened key (``shared.formats.flatten``: ``evtData.Price``); its column is named after it (the
  empty key's column is ``_empty``);
- core columns (``CORE_COLUMNS``) come first in every file; their names start with ``_`` and are reserved;
- names are distinct without regard to case (DuckDB and Spark match column names that way): a field whose name
  equals a name already taken, ignoring case, gets ``__2`` (``__3``, ...) appended, recorded once for good;
- a field's type is one of ``COLUMN_TYPES``, decided by ``decide_type`` from the first values the destination
  sees of it and never changed; values that do not fit it go to its companion column ``<column>__json`` (their
  JSON text), named when the first such value comes;
- at most ``MAX_TYPED_FIELDS`` fields a record type, each name at most ``MAX_FIELD_NAME`` characters: a field
  beyond them has no column of its own and is kept in ``_rest_json`` (as a field repeated within a record is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.formats.exact_json import JsonNumber

ColumnType = Literal["string", "int64", "float64", "bool", "json"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("string", "int64", "float64", "bool", "json")
ColumnsMode = Literal["typed", "json"]

EVENT_NAME, EVENT_TIME, IDENTITY, INSERT_ID = "_event_name", "_event_time", "_identity", "_insert_id"
EXPORTED_AT, REST, PROPERTIES = "_exported_at", "_rest_json", "properties"
CORE_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": (EVENT_NAME, EVENT_TIME, IDENTITY, INSERT_ID),
    "profiles": (IDENTITY, EXPORTED_AT),
}
COMPANION_SUFFIX = "__json"
EMPTY_KEY_COLUMN = "_empty"  # the column of a field whose name is empty (a top-level key ""): readers refuse ""
MAX_TYPED_FIELDS = 10_000
MAX_FIELD_NAME = 1_024


@dataclass(frozen=True)
class FieldColumn:
    """Where one field lands: its column, the column's type, and its companion column once it has one."""

    column: str
    type: ColumnType
    companion: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "type": self.type, "companion": self.companion}


@dataclass(frozen=True)
class SchemaRequest:
    """What a chunk of records needs fixed: new fields with the type their values propose, and companions."""

    new_fields: Mapping[str, ColumnType] = field(default_factory=dict)
    companions: frozenset[str] = frozenset()  # fields (already typed) that met a value their type cannot hold

    def __bool__(self) -> bool:
        return bool(self.new_fields or self.companions)


@dataclass(frozen=True)
class TypedSchema:
    """One record type's fields, by flattened key."""

    record_type: str
    fields: Mapping[str, FieldColumn] = field(default_factory=dict)

    @classmethod
    def from_json(cls, record_type: str, document: Mapping[str, Any] | None) -> TypedSchema:
        found = (document or {}).get("fields", {})
        return cls(record_type, {key: FieldColumn(item["column"], item["type"], item.get("companion"))
                                 for key, item in found.items()})

    def to_json(self) -> dict[str, Any]:
        return {"fields": {key: spec.to_json() for key, spec in self.fields.items()}}

    def missing(self, request: SchemaRequest) -> SchemaRequest:
        """The part of `request` this schema does not answer yet (empty: nothing to write)."""
        new = {key: kind for key, kind in request.new_fields.items() if key not in self.fields}
        companions = frozenset(key for key in request.companions
                               if key in self.fields and self.fields[key].companion is None)
        return SchemaRequest(new, companions)

    def settled(self, request: SchemaRequest) -> TypedSchema:
        """This schema with `request` answered: what is already fixed stays as it is (the first writer wins)."""
        fields = dict(self.fields)
        taken = {name.lower() for name in CORE_COLUMNS.get(self.record_type, ())} | {REST, PROPERTIES}
        for spec in fields.values():
            taken.add(spec.column.lower())
            if spec.companion is not None:
                taken.add(spec.companion.lower())
        for key in sorted(request.new_fields):
            if key in fields or not typeable(key) or len(fields) >= MAX_TYPED_FIELDS:
                continue
            fields[key] = FieldColumn(distinct_name(key or EMPTY_KEY_COLUMN, taken), request.new_fields[key])
        for key in sorted(request.companions):
            found = fields.get(key)
            if found is not None and found.companion is None:
                companion = distinct_name(found.column + COMPANION_SUFFIX, taken)
                fields[key] = FieldColumn(found.column, found.type, companion)
        return TypedSchema(self.record_type, fields)


def typeable(key: str) -> bool:
    """Whether a field may have a column of its own (its name's length; the schema's size is checked apart)."""
    return len(key) <= MAX_FIELD_NAME


def distinct_name(wanted: str, taken: set[str]) -> str:
    """`wanted`, or `wanted__2`, `wanted__3`...: the first not in `taken` ignoring case, which it joins."""
    name, number = wanted, 1
    while name.lower() in taken:
        number += 1
        name = f"{wanted}__{number}"
    taken.add(name.lower())
    return name


# ---------------------------------------------------------------------------------------------
# The first values seen decide a field's type


def value_kind(value: Any) -> ColumnType | None:
    """The column type a single value proposes (None for null): numbers propose int64 or float64."""
    cls = type(value)
    if cls is str:
        return "string"
    if cls is bool:
        return "bool"
    if cls is int:
        return "int64"
    if cls is float or cls is JsonNumber:
        return "float64"
    if value is None:
        return None
    return "json"  # a list, an empty object


def decide_type(values: Iterable[Any]) -> ColumnType | None:
    """The type a field gets from the first values seen of it (None when all are null: nothing is fixed yet).

    Every value a number: int64 when all are integers, float64 otherwise. Values of mixed kinds: the kind of
    the first one (a number by the same rule over the numbers present). Lists and empty objects: json.
    """
    kinds: list[ColumnType] = []
    seen: set[ColumnType] = set()
    for value in values:
        kind = value_kind(value)
        if kind is not None and kind not in seen:
            seen.add(kind)
            kinds.append(kind)
    if not kinds:
        return None
    numbers = seen & {"int64", "float64"}
    first = kinds[0]
    if first in ("int64", "float64"):
        return "float64" if "float64" in numbers else "int64"
    return first


def proposals(columns: Mapping[str, Sequence[Any]], schema: TypedSchema) -> dict[str, ColumnType]:
    """The types this chunk's values propose for its fields the schema does not know yet (all-null ones wait)."""
    found: dict[str, ColumnType] = {}
    for key, values in columns.items():
        if key not in schema.fields:
            kind = decide_type(values)
            if kind is not None:
                found[key] = kind
    return found
