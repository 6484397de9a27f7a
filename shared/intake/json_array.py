"""A JSON array body read as it arrives, an element at a time: each element's text found without parsing the
body (``array_elements.ArrayScanner``), then parsed, checked and staged alone, and the text read dropped, so
that the body is neither one tree of objects (a 90 MB array was over 2.5 GB as one) nor held whole beside its
staged text (2.0x the body at peak). A body of another shape is parsed whole, if small, only to say what is
wrong with it."""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING, Any

import orjson

from shared.formats.gc_pause import cyclic_gc_paused
from shared.intake.array_elements import ArrayScanner, ArrayShapeError, containers_over, element_line
from shared.intake.json_errors import error_position, json_error_reason, json_kind, likely_mistake

if TYPE_CHECKING:  # records calls this module; it hands over its checker
    from shared.intake.records import _Intake


# A body of another shape than [objects, ...] is parsed whole to say what is wrong with it, up to this size
# (so a body is kept whole until it is larger); a larger one is refused with the place where its shape went wrong.
_WHOLE_PARSE_MAX_BYTES = 4 * 1024 * 1024
_COUNT_BYTES = 64 * 1024
_GAP = re.compile(rb"[ \t\r\n]*(?:,[ \t\r\n]*)?")


class JsonArrayText:
    """The text of a JSON array body (after any byte order mark), checked and staged as it arrives: ``feed``
    its pieces, then ``finish``; the problems and the staged records are the ``_Intake``'s. Only the text of
    the element being read is kept, and the line breaks before it counted, so that a problem still says where
    it is in the body (line, and column in characters)."""

    def __init__(self, intake: _Intake) -> None:
        self._intake = intake
        self._scanner = ArrayScanner()
        self._text = bytearray()  # the body from the first byte not dropped yet
        self._dropped = 0  # bytes of the body before ``_text``
        self._lines_dropped = 0  # line breaks in them
        self._line_head = 0  # characters in them after the last line break: the start of ``_text``'s first line
        self._number = 0  # elements read
        self._misshapen: tuple[int, str] | None = None  # (line, message): the body is not an array of records

    def feed(self, data: bytes | bytearray) -> None:
        if self._intake.full:
            return  # refused already; the rest of the body is only read (and its size limited)
        self._text += data
        if self._misshapen is None:
            self._read(final=False)
        elif len(self._text) > _WHOLE_PARSE_MAX_BYTES:  # too large to parse whole: refused where it went wrong
            self._refuse(*self._misshapen)

    def finish(self) -> None:
        intake = self._intake
        if self._misshapen is None and not intake.full:
            self._read(final=True)
        if self._misshapen is not None:
            _read_whole_json(bytes(self._text), intake)  # kept whole: it is small
            if not intake.problems:
                self._refuse(*self._misshapen)
        elif intake.full:
            pass
        elif not self._scanner.opened:
            intake.refuse_body(0, "body", "no records: the body is empty")
        elif self._number == 0:
            intake.refuse_body(0, "body", "no records: the JSON array is empty")
        self._text = bytearray()

    def _read(self, final: bool) -> None:
        try:
            with cyclic_gc_paused(), memoryview(self._text) as view:  # thousands of short-lived dicts, no cycles
                for first, end, containers in self._scanner.elements(self._text, final):
                    self._number += 1
                    if not self._take(view, first, end, containers) or self._intake.full:
                        return
        except ArrayShapeError as exc:
            self._misshapen_at(exc.offset)
            return
        self._drop_read()

    def _take(self, view: memoryview, first: int, end: int, containers: int) -> bool:
        """Parse, check and stage one element; False if the body is refused."""
        intake, number = self._intake, self._number
        limit = intake.max_containers
        if limit is not None and containers > limit and containers_over(self._text, limit, first, end):
            intake.too_many_containers(number)
            return False
        try:
            element = orjson.loads(view[first:end])
        except orjson.JSONDecodeError as exc:
            self._refuse_malformed(first, end, exc)
            return False
        key = intake.check(element, number)
        if key is not None and not intake.problems:
            intake.stage(key, element, element_line(self._text, first, end, element), number)
        return True

    def _drop_read(self) -> None:
        """Drop the text read, once the body is too large to be parsed whole should its shape turn out wrong."""
        if self._dropped + len(self._text) <= _WHOLE_PARSE_MAX_BYTES:
            return
        cut = self._scanner.keep_from()
        text = self._text
        last_break = text.rfind(b"\n", 0, cut)
        if last_break >= 0:
            self._lines_dropped += text.count(b"\n", 0, cut)
            self._line_head = _characters(text, last_break + 1, cut)
        else:
            self._line_head += _characters(text, 0, cut)
        del text[:cut]  # cut after a bracket or at one: never inside a character
        self._dropped += cut
        self._scanner.dropped(cut)

    def _place(self, offset: int) -> tuple[int, int]:
        """1-based (line, column in characters) in the body of ``_text[offset]``."""
        text = self._text
        line = self._lines_dropped + text.count(b"\n", 0, offset) + 1
        last_break = text.rfind(b"\n", 0, offset)
        if last_break >= 0:
            return line, _characters(text, last_break + 1, offset) + 1
        return line, self._line_head + _characters(text, 0, offset) + 1

    def _refuse_malformed(self, first: int, end: int, exc: orjson.JSONDecodeError) -> None:
        """An element that does not parse: the error placed in the body's text (line, column in characters)."""
        text = bytes(self._text[first:end])
        line, column = error_position(exc, text)
        element_line_number, element_column = self._place(first)
        if line == 1:
            column += element_column - 1
        line += element_line_number - 1
        reason = json_error_reason(exc, text, ndjson=False)
        self._intake.refuse_body(line, f"line {line}", f"malformed JSON on line {line}, column {column}: {reason}")

    def _misshapen_at(self, offset: int) -> None:
        """Not an array of objects and arrays. A small body is parsed whole at ``finish`` to say exactly what it
        holds (a scalar element, a JSON object...); a large one is refused with the place where its shape went
        wrong: past the blanks and the comma, at what is there instead of an element."""
        self._intake.restart()
        found = _GAP.match(self._text, offset)
        offset = found.end() if found is not None and found.end() < len(self._text) else offset
        line, column = self._place(offset)
        self._misshapen = line, (
            f"the JSON body must be an array of records (objects) separated by commas; on line {line}, column "
            f"{column} it holds something else")
        if self._dropped or len(self._text) > _WHOLE_PARSE_MAX_BYTES:
            self._refuse(*self._misshapen)

    def _refuse(self, line: int, message: str) -> None:
        # No "[" where the body starts: ``_text`` is its start (after any blanks), and may show the likely mistake.
        mistake = None if self._scanner.opened else likely_mistake(self._text, whole=False)
        self._misshapen = None
        self._text = bytearray()
        if mistake is not None:
            self._intake.refuse_body(0, "body", mistake)
        else:
            self._intake.refuse_body(line, f"line {line}", message)


def _characters(text: bytes | bytearray, start: int, end: int) -> int:
    """The characters in UTF-8 ``text[start:end]``, counted 64 KiB at a time: a one-line body's dropped text is
    megabytes, and as one ``str`` it was 4 bytes a character."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    count = 0
    with memoryview(text) as view:
        for at in range(start, end, _COUNT_BYTES):
            count += len(decoder.decode(view[at : min(at + _COUNT_BYTES, end)]))
    return count + len(decoder.decode(b"", final=True))


def _read_whole_json(body: bytes, intake: _Intake) -> None:
    with cyclic_gc_paused():
        try:
            elements = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            mistake = likely_mistake(body, whole=True)
            if mistake is not None:
                intake.refuse_body(0, "body", mistake)
                return
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
