"""A typed Parquet destination's schema: which column each record field lands in, with which type, fixed for the
destination when the field is first seen (pure; `shared.control.destination_schemas` keeps it in control storage).

The rules (docs/formats.md says them for customers):

- a field is a flattened key (``shared.formats.flatten``: ``evtData.Price``); its column is named after it (the
  empty key's column is ``_empty``);
- core columns (``CORE_COLUMNS``) come first in every file; their names start with ``_`` and are reserved;
- names are distinct without regard to case (DuckDB and Spark match column names that way): a field whose name
  equals a name already taken, ignoring case, gets ``__2`` (``__3``, ...) appended, recorded once for good;
- a field's type is one of ``COLUMN_TYPES``, decided by ``type_of_kinds`` from the kinds of the first values the
  destination sees of it (a chunk's) and never changed; values that do not fit it go to its companion column
  ``<column>__json`` (their JSON text), named when the first such value comes;
- at most ``MAX_TYPED_FIELDS`` fields a record type, each name at most ``MAX_FIELD_NAME`` characters: a field
  beyond them has no column of its own and is kept in ``_rest_json`` (as a field repeated within a record is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def decide_type(values: Iterable[Any]) -> ColumnType | None:
    """The type a field gets from the first values seen of it (None when all are null: nothing is fixed yet)."""
    return type_of_kinds(value_kinds(values))


def type_of_kinds(kinds: set[ColumnType]) -> ColumnType | None:
    """The type values of these kinds fix, whatever their order: numbers only, int64 when all are integers, else
    float64; one kind, that kind; kinds that disagree, string when one is a string (the others then go to the
    companion column), else json (which holds any value as its JSON text)."""
    if not kinds:
        return None
    if kinds <= {"int64", "float64"}:
        return "float64" if "float64" in kinds else "int64"
    if len(kinds) == 1:
        return next(iter(kinds))
    return "string" if "string" in kinds else "json"


def proposals(kinds: Mapping[str, set[ColumnType]], schema: TypedSchema) -> dict[str, ColumnType]:
    """The types a chunk's value kinds (by field) propose for the fields the schema does not know yet (fields
    whose values are all null wait)."""
    found: dict[str, ColumnType] = {}
    for key, seen in kinds.items():
        if key not in schema.fields:
            kind = type_of_kinds(seen)
            if kind is not None:
                found[key] = kind
    return found


_KIND_OF_TYPE: dict[type, ColumnType] = {str: "string", bool: "bool", int: "int64", float: "float64",
                                          JsonNumber: "float64"}


def value_kinds(values: Iterable[Any]) -> set[ColumnType]:
    """The kinds of a field's values in a chunk (null is none; lists and empty objects are json): one pass in C."""
    return {_KIND_OF_TYPE.get(kind, "json") for kind in set(map(type, values)) if kind is not type(None)}
