"""Exact JSON values: staged lines parsed so that every number prints as it was sent (``parse_exact``,
``parse_chunk``), parsed values written back as compact JSON text with their numbers exact (``json_text``), and
what kind of JSON value a value is, in words (``json_kind``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import orjson


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words ("a string", "an array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object"


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
# Writing parsed values back with exact numbers


def float_text(value: float) -> str:
    """The JSON text of a float, as orjson prints it (the text sent whenever ``parse_exact`` chose orjson)."""
    text = orjson.dumps(value)
    if text == b"null":
        raise ValueError(f"{value!r} is not a JSON number")
    return text.decode()


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
        return float_text(value)
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
