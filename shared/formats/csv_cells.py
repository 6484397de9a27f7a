"""The CSV cells of a record: ``flatten_record`` gives every column's cell text (columns named by the rule in
``shared.formats.flatten``), and cells are quoted as RFC 4180 and ``csv.writer`` quote them.

This is the general path, the definition the encoder's fast paths (``csv_shapes``, ``csv_columns``) must match
byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import compress
from typing import Any

from shared.formats.exact_json import float_text, json_text
from shared.formats.flatten import nested_prefix, repeated_column

NEEDS_QUOTES = re.compile(r'[,"\r\n]').search


def flatten_record(record: Mapping[str, Any]) -> dict[str, str]:
    """The CSV cells of one record, by column name.

    Columns as ``shared.formats.flatten`` names them; cells:

    - an empty object: ``"{}"``;
    - a list: its compact JSON text (numbers exact);
    - ``None`` -> ``""``; booleans -> ``"true"`` / ``"false"``; numbers -> their JSON text, exactly as
      sent (a ``JsonNumber``'s literal; a float as orjson prints it, which is the text sent whenever
      ``parse_exact`` chose orjson); strings unchanged.

    Collisions: when two fields yield the same column (``{"a.b": 1, "a": {"b": 2}}``) neither is
    dropped: ``ValueError`` names the column (``repeated_column``), and the record must be renamed at its source.
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
            leaves += _flatten_into(out, value, nested_prefix(prefix, key)) - 1
        elif cls is float:
            out[prefix + key] = float_text(value)
        elif cls is bool:
            out[prefix + key] = "true" if value else "false"
        elif value is None:
            out[prefix + key] = ""
        elif cls is list:
            out[prefix + key] = json_text(value)
        elif isinstance(value, Mapping) and value:
            leaves += _flatten_into(out, value, nested_prefix(prefix, key)) - 1
        else:
            out[prefix + key] = scalar_text(value)
    return leaves


def _collision_error(record: Mapping[str, Any]) -> ValueError:
    name = repeated_column(record)
    if name is not None:
        return ValueError(
            f"two fields of the record both become the CSV column {name!r} (a key containing '.' "
            "matches a nested object's key); rename one of them"
        )
    return ValueError("two fields of the record become the same CSV column")


def scalar_text(value: Any) -> str:
    if isinstance(value, str):  # JsonNumber or another str subclass
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, list | tuple | Mapping):
        return json_text(value)
    raise TypeError(f"cannot write a {type(value).__name__} as a CSV cell")


def quote_row(row: list[str]) -> str:
    """Join cells as ``csv.writer`` does by default: RFC 4180, quoting only the cells that need it."""
    line = ",".join(row)
    if line.count(",") == len(row) - 1 and '"' not in line and "\n" not in line and "\r" not in line and line:
        return line  # the usual case, checked in C rather than cell by cell
    for index in compress(range(len(row)), map(NEEDS_QUOTES, row)):
        row[index] = '"' + row[index].replace('"', '""') + '"'
    return ",".join(row) if row != [""] else '""'


def quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if NEEDS_QUOTES(cell) else cell


def list_cell(value: list[Any]) -> str:
    text = json_text(value)  # never holds a raw CR or LF: JSON escapes them
    return '"' + text.replace('"', '""') + '"' if "," in text or '"' in text else text
