"""Reading JSON text: when re-serialising a parsed value would change it, where array elements start
and end in the original text, and parse errors in words a person can act on (line and column)."""

from __future__ import annotations

import re
from typing import Any

import orjson

DEEP_NESTING = 200  # from this depth orjson.dumps cannot re-serialise a value; keep its original text


# Everything up to and including the next bracket outside a string, without backtracking.
_TO_NEXT_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


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


def needs_original_text(value: Any, depth: int = 0) -> bool:
    """Whether ``orjson.dumps`` of this parsed object or array might not reproduce a number of the text
    it came from (an integer beyond 64 bits, a float with more digits than a double keeps), or cannot
    run at all (orjson.dumps stops at 255 levels). A literal so small it underflows to 0.0 (1e-400)
    is not detected: it is 0.0 for every reader that uses doubles."""
    values = value.values() if type(value) is dict else value
    kinds = set(map(type, values))  # one pass in C; most levels hold no float and no container
    if float in kinds and any(map(_inexact_float, filter(_is_float, values))):
        return True
    if dict in kinds or list in kinds:
        if depth >= DEEP_NESTING:
            return True
        for item in values:
            if (type(item) is dict or type(item) is list) and needs_original_text(item, depth + 1):
                return True
    return False


_is_float = float.__instancecheck__


def _inexact_float(x: float) -> bool:
    if not -9.2e18 < x < 9.2e18:  # orjson parses integers beyond 64 bits as floats
        return True
    text = repr(x)  # the shortest text that reads back as x; always holds "." or "e"
    if len(text) <= 16:
        return False
    # A literal of at most 15 significant digits parses to a double whose shortest text has at most 15.
    digits = text.partition("e")[0].replace(".", "").lstrip("-0").rstrip("0")
    return len(digits) > 15


def element_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each object element of the JSON array ``body`` (valid JSON, all objects)."""
    spans = []
    depth = 0
    start = 0
    for match in _TO_NEXT_BRACKET.finditer(body):
        end = match.end()
        if body[end - 1] in _OPENERS:
            depth += 1
            if depth == 2:
                start = end - 1
        else:
            if depth == 2:
                spans.append((start, end))
            depth -= 1
    return spans


def error_position(exc: orjson.JSONDecodeError, doc: bytes) -> tuple[int, int]:
    """1-based (line, column in characters) of a parse error in ``doc``."""
    try:
        doc.decode("utf-8")
    except UnicodeDecodeError as bad:  # orjson checks UTF-8 first and reports position 0: find the byte
        line_start = doc.rfind(b"\n", 0, bad.start) + 1
        before = doc[line_start : bad.start].decode("utf-8")  # valid up to the first bad byte
        return doc.count(b"\n", 0, bad.start) + 1, len(before) + 1
    return exc.lineno, exc.colno


def json_error_reason(exc: orjson.JSONDecodeError, doc: bytes, *, ndjson: bool) -> str:
    """orjson's complaint in words for the people who send the data."""
    msg = exc.msg
    text = exc.doc if isinstance(exc.doc, str) else ""
    if "UTF-8" in msg and "order mark" not in msg:
        try:
            doc.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"the text is not valid UTF-8 (byte 0x{doc[bad.start]:02x}: {bad.reason})"
        return "the text is not valid UTF-8"
    if "surrogate" in msg:
        return r"a \u escape is a lone UTF-16 surrogate (such as \ud800), which is not a character"
    if "infinity when parsed as double" in msg:
        return "a number is too large for a 64-bit float"
    if "depth limit" in msg:
        return "objects and arrays are nested more than 1024 levels deep"
    if text[exc.pos : exc.pos + 3] == "NaN" or text[exc.pos : exc.pos + 8] == "Infinity":
        return "NaN and Infinity are not JSON numbers"
    if "content after document" in msg:
        if ndjson:
            return "there is more than one JSON value on the line (NDJSON holds one record per line)"
        return "there is more text after the end of the array"
    if "end of data" in msg:
        return "the JSON text ends in the middle of a value"
    if "byte order mark" in msg:
        return "a UTF-8 byte order mark is only allowed at the very start of the body"
    if "control character" in msg:
        return "a string holds a raw control character (line breaks and tabs in strings must be escaped)"
    return str(msg)

