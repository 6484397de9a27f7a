"""A JSON array body read an element at a time: each element's text found without parsing the body
(``array_elements.scan_array``), then parsed, checked and staged alone, so that the body is never one tree of
objects (a 90 MB array was over 2.5 GB as one). A body of another shape is parsed whole, if small, only to say
what is wrong with it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from shared.formats.gc_pause import cyclic_gc_paused
from shared.intake.array_elements import BLANK, ArrayShapeError, containers_over, element_line, scan_array
from shared.intake.json_errors import error_position, json_error_reason, json_kind

if TYPE_CHECKING:  # records calls this module; it hands over its checker
    from shared.intake.records import _Intake


# A body of another shape than [objects, ...] is parsed whole to say what is wrong with it, up to this size;
# a larger one is refused with the place where its shape went wrong.
_WHOLE_PARSE_MAX_BYTES = 4 * 1024 * 1024
_GAP = re.compile(rb"[ \t\r\n]*(?:,[ \t\r\n]*)?")


def read_json_array(body: bytes | bytearray, start: int, intake: _Intake) -> None:
    """Element by element: each is parsed, checked and staged on its own, so that the body is never one tree
    of objects (a 90 MB array was over 2.5 GB as one)."""
    if BLANK.fullmatch(body, start) is not None:
        intake.refuse_body(0, "body", "no records: the body is empty")
        return
    view = memoryview(body)
    limit = intake.max_containers
    number = 0
    with cyclic_gc_paused():  # thousands of short-lived dicts, no cycles: no point rescanning them
        try:
            for first, end, containers in scan_array(body, start):
                number += 1
                if limit is not None and containers > limit and containers_over(body, limit, first, end):
                    intake.too_many_containers(number)
                    return
                try:
                    element = orjson.loads(view[first:end])
                except orjson.JSONDecodeError as exc:
                    _refuse_malformed(body, start, first, end, exc, intake)
                    return
                key = intake.check(element, number)
                if key is not None and not intake.problems:
                    intake.stage(key, element, element_line(body, first, end, element), number)
                if intake.full:
                    return
        except ArrayShapeError as exc:
            _refuse_shape(body, start, exc.offset, intake)
            return
    if number == 0:
        intake.refuse_body(0, "body", "no records: the JSON array is empty")


def _refuse_malformed(body: bytes | bytearray, start: int, first: int, end: int, exc: orjson.JSONDecodeError,
                      intake: _Intake) -> None:
    """An element that does not parse: the error placed in the body's text (line, column in characters)."""
    text = bytes(memoryview(body)[first:end])
    line, column = error_position(exc, text)
    if line == 1:
        line_start = max(start, body.rfind(b"\n", start, first) + 1)
        column += len(bytes(body[line_start:first]).decode("utf-8", "replace"))
    line += body.count(b"\n", start, first)
    reason = json_error_reason(exc, text, ndjson=False)
    intake.refuse_body(line, f"line {line}", f"malformed JSON on line {line}, column {column}: {reason}")


def _refuse_shape(body: bytes | bytearray, start: int, offset: int, intake: _Intake) -> None:
    """Not an array of objects and arrays: a small body is parsed whole to say exactly what it holds (a
    scalar element, a JSON object...); a large one is refused with the place where its shape went wrong."""
    intake.restart()
    if len(body) - start <= _WHOLE_PARSE_MAX_BYTES:
        _read_whole_json(bytes(memoryview(body)[start:]), intake)
        if intake.problems:
            return
    found = _GAP.match(body, offset)  # past the blanks and the comma: at what is there instead of an element
    offset = found.end() if found is not None and found.end() < len(body) else offset
    line = body.count(b"\n", start, offset) + 1
    line_start = max(start, body.rfind(b"\n", start, offset) + 1)
    column = len(bytes(body[line_start:offset]).decode("utf-8", "replace")) + 1
    intake.refuse_body(line, f"line {line}", (
        f"the JSON body must be an array of records (objects) separated by commas; on line {line}, column "
        f"{column} it holds something else"))


def _read_whole_json(body: bytes, intake: _Intake) -> None:
    with cyclic_gc_paused():
        try:
            elements = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            line, column = error_position(exc, body)
            reason = json_error_reason(exc, body, ndjson=False)
            intake.refuse_body(line, f"line {line}", f"malformed JSON on line {line}, column {column}: {reason}")
            return
        if type(elements) is not list:
            intake.refuse_body(0, "body", _not_an_array(elements))
            return
        if not elements:
            intake.refuse_body(0, "body", "no records: the JSON array is empty")
            return
        for number, element in enumerate(elements, 1):
            intake.check(element, number)  # only to name the problems: this body is refused whatever it holds
            if intake.full:
                return


def _not_an_array(value: Any) -> str:
    message = f"the JSON body must be an array of records, not {json_kind(value)}"
    if type(value) is dict:
        holders = [key for key, member in value.items() if type(member) is list][:3]
        if holders:
            names = " or ".join(f'"{key}"' for key in holders)
            message += f" (its {names} member holds an array: send that array itself)"
    return message
