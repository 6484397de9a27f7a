"""JSON problems in words a person can act on: where a parse error is (line and column), why the text was
refused, what kind of JSON value was sent where another kind was expected, and the likely mistake behind a body
that is not JSON of its declared kind (gzip without its Content-Encoding, NDJSON sent as application/json)."""

from __future__ import annotations

import orjson

from shared.formats.exact_json import json_kind as json_kind  # re-exported: the rule lives with exact JSON values

ORJSON_READ_DEPTH = 1024  # orjson.loads refuses objects and arrays nested deeper than this
GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip member (RFC 1952)
# A body is taken for NDJSON sent as application/json from its first lines: enough to tell, on the refusal path only.
_NDJSON_SAMPLE_LINES = 100

GZIPPED_LINE = "the line is gzip-compressed data (it starts with the gzip magic bytes 1f 8b), not JSON text"
GZIP_TEXT = (
    "the body is gzip-compressed data (it starts with the gzip magic bytes 1f 8b), not JSON text: send a gzip "
    "body with the header 'Content-Encoding: gzip' (compressed once), or send it uncompressed"
)
NDJSON_AS_JSON = (
    "the body holds one JSON object per line (NDJSON), but its Content-Type is application/json, which is one "
    "JSON array of records: send it with 'Content-Type: application/x-ndjson', or send the records as one array"
)


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
    if doc.startswith(GZIP_MAGIC):
        return GZIPPED_LINE
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


def likely_mistake(head: bytes | bytearray, *, whole: bool) -> str | None:
    """The mistake that likely made a body not the JSON array its Content-Type says, from its first bytes
    (``head``, the whole body when ``whole``): gzip sent without 'Content-Encoding: gzip', or NDJSON sent as
    application/json (its first lines, at least two, each one whole JSON object). None if neither shows."""
    if head.startswith(GZIP_MAGIC):
        return GZIP_TEXT
    if _objects_one_per_line(head, whole=whole):
        return NDJSON_AS_JSON
    return None


def _objects_one_per_line(text: bytes | bytearray, *, whole: bool) -> bool:
    """Whether the first lines of ``text`` (up to ``_NDJSON_SAMPLE_LINES``, blank ones aside, and at least two)
    each parse as one JSON object. Unless ``whole``, the last line may be cut, and is not looked at."""
    objects, start = 0, 0
    while objects < _NDJSON_SAMPLE_LINES:
        end = text.find(b"\n", start)
        if end < 0:
            if not whole:
                break
            end = len(text)
        line = bytes(text[start:end]).strip()
        if line:
            try:
                if type(orjson.loads(line)) is not dict:
                    return False
            except orjson.JSONDecodeError:
                return False
            objects += 1
        if end >= len(text):
            break
        start = end + 1
    return objects >= 2

