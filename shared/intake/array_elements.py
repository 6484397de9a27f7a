"""A JSON array body, an element at a time: where each element's text is (``ArrayScanner``, as the body
arrives, without parsing it), and its staged line: orjson's compact text of the parsed element when that text
keeps every number as sent, otherwise the element's own text, cut out of the body."""

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


class ArrayScanner:
    """Where each element of a JSON array is, found as the array's text arrives, without parsing it: a body is
    never one tree of objects in memory, nor (``JsonArrayText`` drops what was read) held whole.

    ``elements(text, final)`` yields (start, end, containers) of each element complete in ``text`` and not
    yielded before; ``containers`` counts the element's objects and arrays (brackets outside strings), itself
    included. ``text`` is the text so far; its first ``keep_from()`` bytes may be dropped between calls (then
    say so with ``dropped``). Raises ``ArrayShapeError`` (an offset in ``text``) on text of another shape.
    Elements are not checked here: each is parsed on its own by the caller. If every element parses and every
    gap is a comma, the whole text is a valid JSON array of exactly these elements.
    """

    def __init__(self) -> None:
        self.opened = False  # past the "["
        self.closed = False  # past the array's "]"
        self._pos = 0  # where the scan goes on: just after the last bracket seen
        self._gap = 0  # where the text after the last element (or after the "[") starts
        self._element = 0  # where the element being scanned starts
        self._depth = 0
        self._containers = 0
        self._first = True
        self._tried = 0  # the text's length when the scan last ran out of text

    def elements(self, text: bytes | bytearray, final: bool) -> Iterator[tuple[int, int, int]]:
        # Text after the last bracket is scanned again when more arrives (a long string may be cut anywhere);
        # waiting until at least as much text arrived as would be scanned again keeps the scan linear.
        if final or len(text) - self._tried >= self._tried - self._pos:
            yield from self._scan(text, final)

    def keep_from(self) -> int:
        """How much of the text has been read: what comes before this offset is never looked at again."""
        if self.opened and not self.closed:
            return self._element if self._depth else self._gap
        return self._pos

    def dropped(self, size: int) -> None:
        """The first ``size`` bytes of the text were dropped (at most ``keep_from()``)."""
        self._pos -= size
        self._gap -= size
        self._element -= size
        self._tried -= size

    def _scan(self, text: bytes | bytearray, final: bool) -> Iterator[tuple[int, int, int]]:
        self._tried = len(text)
        if not self.opened:
            opening = BLANK.match(text, self._pos)
            assert opening is not None  # matches the empty string
            self._pos = opening.end()
            if self._pos == len(text):
                return  # blank so far (the caller says whether a blank body is one)
            if text[self._pos] != ord("["):
                raise ArrayShapeError(self._pos)
            self.opened = True
            self._pos = self._gap = self._pos + 1
        while not self.closed:
            match = _TO_NEXT_BRACKET.match(text, self._pos)
            if match is None:
                break  # no bracket in the text yet (or a string never closed)
            end = self._pos = match.end()
            if text[end - 1] in _OPENERS:
                if self._depth == 0:
                    if not (BLANK if self._first else _COMMA).fullmatch(text, self._gap, end - 1):
                        raise ArrayShapeError(self._gap)
                    self._element, self._containers, self._first = end - 1, 0, False
                self._depth += 1
                self._containers += 1
            elif self._depth == 0:  # the array's own "]" (or a stray "}": the caller's parse of the body names it)
                if not BLANK.fullmatch(text, self._gap, end - 1) or text[end - 1] != ord("]"):
                    raise ArrayShapeError(self._gap)
                self.closed = True
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._gap = end
                    yield self._element, end, self._containers
        if self.closed:
            if not BLANK.fullmatch(text, self._pos):
                raise ArrayShapeError(self._pos)
            self._pos = len(text)
        elif final:
            raise ArrayShapeError(len(text))


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
