"""JSON problems in words a person can act on: where a parse error is (line and column), why the text was
refused, and what kind of JSON value was sent where another kind was expected."""

from __future__ import annotations

import orjson

ORJSON_READ_DEPTH = 1024  # orjson.loads refuses objects and arrays nested deeper than this


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
        return f"objects and arrays are nested more than {ORJSON_READ_DEPTH} levels deep"
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

