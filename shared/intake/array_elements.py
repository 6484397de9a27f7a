"""The staged line of each element of a JSON array body: orjson's compact text of the parsed element when
that text keeps every number as sent, otherwise the element's own text, cut out of the body."""

from __future__ import annotations

import re
from typing import Any

import orjson

# orjson.dumps stops at 255 levels; from this depth on, an element keeps its original text. (Not the same
# limit as json_errors.ORJSON_READ_DEPTH, what orjson.loads accepts, nor a recursion budget.)
_KEEP_TEXT_FROM_DEPTH = 200

# Everything up to and including the next bracket outside a string, without backtracking.
_TO_NEXT_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


def element_lines(body: bytes, elements: list[dict[str, Any]]) -> list[bytes]:
    """One compact line per element: orjson's text, or the element's original text where a number
    would not survive a round trip through a double (or nesting is too deep for orjson.dumps)."""
    if not any(map(needs_original_text, elements)):
        dumps = orjson.dumps
        return [dumps(element) for element in elements]
    lines = []
    for start, end in element_spans(body):
        text = body[start:end]
        if b"\n" in text or b"\r" in text:
            # Raw line breaks can only sit between tokens (JSON strings cannot hold them).
            text = text.replace(b"\r", b" ").replace(b"\n", b" ")
        lines.append(text)
    if len(lines) != len(elements):  # cannot happen for a body orjson accepted; never stage a mismatch
        raise RuntimeError(f"found {len(lines)} elements in the array text, orjson found {len(elements)}")
    return lines


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
