"""A JSON array body, an element at a time: where each element's text is (``scan_array``, without parsing the
body whole), and its staged line: orjson's compact text of the parsed element when that text keeps every
number as sent, otherwise the element's own text, cut out of the body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from shared.intake.json_errors import ORJSON_READ_DEPTH

# orjson.dumps stops at 255 levels; from this depth on, an element keeps its original text. (Not the same
# limit as json_errors.ORJSON_READ_DEPTH, what orjson.loads accepts, nor a recursion budget.)
_KEEP_TEXT_FROM_DEPTH = 200

# Everything up to and including the next bracket outside a string, without backtracking.
_TO_NEXT_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
BLANK = re.compile(rb"[ \t\r\n]*")  # JSON's whitespace
_COMMA = re.compile(rb"[ \t\r\n]*,[ \t\r\n]*")


class ArrayShapeError(Exception):
    """The text is not ``[`` objects or arrays separated by commas ``]``: a scalar element, a missing comma,
    text after the array, an array never closed. ``offset`` is where the scan gave up."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def scan_array(body: bytes | bytearray, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(start, end, containers) of each element of the JSON array in ``body[start:]``, one at a time, without
    parsing it: a body is never one tree of objects in memory. ``containers`` counts the element's objects and
    arrays (brackets outside strings), itself included. Raises ``ArrayShapeError`` on text of another shape.

    Elements are not checked here: each is parsed on its own by the caller. If every element parses and every
    gap is a comma, the whole text is a valid JSON array of exactly these elements.
    """
    opening = BLANK.match(body, start)
    assert opening is not None  # matches the empty string
    if body[opening.end() : opening.end() + 1] != b"[":
        raise ArrayShapeError(opening.end())
    depth = 0
    gap_start = opening.end() + 1
    element_start = containers = 0
    first = True
    for match in _TO_NEXT_BRACKET.finditer(body, gap_start):
        end = match.end()
        if body[end - 1] in _OPENERS:
            if depth == 0:
                if not (BLANK if first else _COMMA).fullmatch(body, gap_start, end - 1):
                    raise ArrayShapeError(gap_start)
                element_start, containers, first = end - 1, 0, False
            depth += 1
            containers += 1
        elif depth == 0:  # the array's own "]" (or a stray "}": the caller's parse of the body names it)
            if not BLANK.fullmatch(body, gap_start, end - 1) or body[end - 1] != ord("]"):
                raise ArrayShapeError(gap_start)
            if not BLANK.fullmatch(body, end):
                raise ArrayShapeError(end)
            return
        else:
            depth -= 1
            if depth == 0:
                yield element_start, end, containers
                gap_start = end
    raise ArrayShapeError(len(body))


def containers_over(text: bytes | bytearray, limit: int, start: int = 0, end: int | None = None) -> bool:
    """Whether the JSON text ``text[start:end]`` holds more than ``limit`` objects and arrays (brackets outside
    strings) before it nests deeper than orjson reads: text nested too deep is left to orjson, which refuses it
    in words of its own after at most ``limit`` containers. Counting a bracket in Python is slow, so text
    that cannot be over the limit is answered in C first, and the count stops at ``limit + 1``."""
    stop = len(text) if end is None else end
    if text.count(b"{", start, stop) + text.count(b"[", start, stop) <= limit:
        return False
    count = depth = 0
    for match in _TO_NEXT_BRACKET.finditer(text, start, stop):
        if text[match.end() - 1] in _OPENERS:
            count += 1
            depth += 1
            if count > limit:
                return True
            if depth > ORJSON_READ_DEPTH:
                return False
        else:
            depth -= 1
    return False


def element_line(body: bytes | bytearray, start: int, end: int, element: dict[str, Any]) -> bytes:
    """The staged line of one element: orjson's compact text, or the element's own text where a number would
    not survive a round trip through a double (or nesting is too deep for orjson.dumps)."""
    if not needs_original_text(element):
        # Copied to its own size: orjson's bytes keep the whole buffer they were written in (4 KiB at least),
        # so a staged line of 270 bytes held 4 KiB: a 16 MB array's lines took 240 MB.
        return bytes(memoryview(orjson.dumps(element)))
    text = bytes(body[start:end])
    if b"\n" in text or b"\r" in text:
        # Raw line breaks can only sit between tokens (JSON strings cannot hold them).
        text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    return text


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
        if depth >= _KEEP_TEXT_FROM_DEPTH:
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
