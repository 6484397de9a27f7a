"""Validate a posted batch of records and group it for staging. Pure: bytes in, ``ParsedBatch`` out.

A batch is refused whole (``RecordsRejected``, listing the first problems with their line numbers)
or accepted whole. Each record is parsed exactly once with ``orjson``. Staged lines keep the
record's values exactly: an NDJSON line is staged as the very bytes that were sent (orjson turns
integers beyond 64 bits into floats, so a parsed record is never re-serialized), and an element of
a JSON array is re-serialized only when that cannot change a number; otherwise its original text
is cut out of the body.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.control.batch_state import RecordType
from shared.formats.flatten import may_repeat_a_column, repeated_column
from shared.intake.array_elements import containers_over
from shared.intake.body import BodyKind
from shared.intake.columns import PartitionColumns
from shared.intake.event_time import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    PROFILE_IDENTITY_KEYS,
    PROPERTIES_TIME_KEYS,
    US_PER_HOUR,
    EventTimeError,
    epoch_microseconds,
    find_event_name,
    find_event_time,
    find_profile_identity,
    partition_key_for_microseconds,
)
from shared.intake.json_array import JsonArrayText
from shared.intake.json_errors import GZIP_TEXT, GZIPPED_LINE, error_position, json_error_reason, json_kind

_BOM = b"\xef\xbb\xbf"
_LOOKED_FOR_NAME = ", ".join(EVENT_NAME_KEYS)
_LOOKED_FOR_TIME = ", ".join((*EVENT_TIME_KEYS, *(f"properties.{k}" for k in PROPERTIES_TIME_KEYS)))
_LOOKED_FOR_IDENTITY = ", ".join(PROFILE_IDENTITY_KEYS) + ", properties.distinct_id, $properties.$distinct_id"


@dataclass(frozen=True)
class RecordProblem:
    """One reason a batch was refused.

    ``line`` is 1-based: the NDJSON line, or for a JSON array the element's position (``where`` then
    says "record N"); for a JSON body that does not parse, the text line of the error ("line N");
    0 for the body as a whole ("body": empty, or not an array). ``message`` is the full sentence,
    ``where`` included.
    """

    line: int
    field: str | None
    message: str
    where: str


class RecordsRejected(Exception):
    """The batch is refused whole; nothing of it may be staged."""

    def __init__(self, message: str, problems: list[RecordProblem]):
        super().__init__(message)
        self.message = message
        self.problems = problems


@dataclass
class StagedPartition:
    """Records bound for one partition: ``date=YYYY-MM-DD/hour=HH`` for events, ``""`` for profiles.

    The records are kept as the partition's staged text, written as they are accepted: one compact JSON record
    a line, each with its newline (no line holds one). One buffer, not an object per line, and not a
    ``bytearray``: ``BytesIO.getvalue`` hands its buffer over as ``bytes`` without a copy, so staging hashes
    and uploads the very text intake built (issue 11: a list of lines joined at staging was 2 more copies).
    """

    key: str
    columns: set[str] = field(default_factory=set)  # the records' CSV columns (see shared.intake.columns)
    records: int = 0
    _text: io.BytesIO = field(default_factory=io.BytesIO, repr=False)

    def add(self, line: bytes) -> None:
        self._text.write(line)
        self._text.write(b"\n")
        self.records += 1

    def text(self) -> bytes:
        """The partition's NDJSON text, each line with its newline; the buffer itself (call it once the
        partition is complete: a write after it would copy the buffer)."""
        return self._text.getvalue()

    @property
    def lines(self) -> list[bytes]:
        """The staged lines, without their newlines (a copy: for readers such as tests, not for staging)."""
        return self.text().split(b"\n")[:-1]


@dataclass
class ParsedBatch:
    record_type: RecordType
    record_count: int
    partitions: dict[str, StagedPartition]
    total_bytes: int  # size of the staged records as NDJSON: each line plus its newline


def parse_batch(
    body: bytes | bytearray, content_type: BodyKind, record_type: RecordType, *, max_problems: int = 20,
    unique_columns: bool = False, max_containers: int | None = None, max_columns: int | None = None,
) -> ParsedBatch:
    """Validate ``body`` (decoded, uncompressed) and group its records for staging.

    ``content_type`` is "ndjson" (one JSON object per line; blank lines skipped but counted) or
    "json" (one array of objects). A UTF-8 byte order mark at the start is tolerated. Events need a
    name and a valid time (see ``shared.intake.event_time``) and are grouped by event hour; profiles need an
    identity and form one partition. Raises ``RecordsRejected`` with up to ``max_problems`` problems.
    With ``unique_columns`` (a CSV destination) a record whose keys flatten to the same column twice
    (``{"a.b": 1, "a": {"b": 2}}``) is refused here rather than failing its export later.

    Memory: the body is read a line or an element at a time (never split or parsed whole); what stays is each
    partition's staged text (``StagedPartition``). Intake feeds a ``BodyReader`` as the body arrives instead.
    ``max_containers`` refuses a record holding more objects and arrays than that before it is parsed (one
    line of ``[[],[],...]`` would otherwise be millions of lists); ``max_columns`` refuses a batch as soon as a
    partition has more CSV columns than that.
    """
    reader = BodyReader(content_type, record_type, max_problems=max_problems, unique_columns=unique_columns,
                        max_containers=max_containers, max_columns=max_columns)
    reader.feed(body)
    return reader.finish()


class BodyReader:
    """A body checked and staged as it arrives (``feed`` its pieces, then ``finish``): NDJSON a line at a time,
    a JSON array an element at a time (``json_array``), and only the staged text stays, not the body as well.
    A UTF-8 byte order mark at the start is tolerated."""

    def __init__(self, content_type: BodyKind, record_type: RecordType, *, max_problems: int = 20,
                 unique_columns: bool = False, max_containers: int | None = None,
                 max_columns: int | None = None) -> None:
        if content_type not in ("ndjson", "json"):
            raise ValueError(f"content_type must be 'ndjson' or 'json', not {content_type!r}")
        if record_type not in ("events", "profiles"):
            raise ValueError(f"record_type must be 'events' or 'profiles', not {record_type!r}")
        self._intake = _Intake(record_type, max(1, max_problems), "line" if content_type == "ndjson" else "record")
        self._intake.unique_columns = unique_columns
        self._intake.max_containers = max_containers
        self._intake.max_columns = max_columns
        self._text = _NdjsonText(self._intake) if content_type == "ndjson" else JsonArrayText(self._intake)
        self._head: bytearray | None = bytearray()  # the body's first bytes, until it is known whether a BOM starts it

    def feed(self, data: bytes | bytearray) -> None:
        if self._head is not None:
            data = self._head + data if self._head else data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._head = bytearray(data)
                return
            self._head = None
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
        self._text.feed(data)

    def finish(self) -> ParsedBatch:
        if self._head is not None:  # a body shorter than a byte order mark: not one
            head, self._head = self._head, None
            self._text.feed(head)
        self._text.finish()
        return self._intake.result()


# ---------------------------------------------------------------------------------------------


class _Intake:
    """Checks records one by one, collects problems, and stages the good ones by partition."""

    def __init__(self, record_type: RecordType, max_problems: int, unit: str):
        self.events = record_type == "events"
        self.record_type: RecordType = record_type
        self.max_problems = max_problems
        self.unit = unit  # "line" or "record"
        self.problems: list[RecordProblem] = []
        self.invalid = 0
        self.records = 0
        self.total_bytes = 0
        self.stopped_at: int | None = None
        self.body_problem: str | None = None
        self.partitions: dict[str, StagedPartition] = {}
        self._keys_by_hour: dict[int, str] = {}
        self._columns: dict[str, PartitionColumns] = {}
        self.unique_columns = False
        self.max_containers: int | None = None
        self.max_columns: int | None = None

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.max_problems or self.body_problem is not None

    def check(self, record: Any, number: int) -> str | None:
        """The record's partition key, or None after recording why it is invalid."""
        self.records += 1
        if type(record) is not dict:
            self._invalid(number, [(None, f"a record must be a JSON object, not {json_kind(record)}")])
            return None
        if self.unique_columns and may_repeat_a_column(record):
            column = repeated_column(record)
            if column is not None:
                self._invalid(number, [(column, (
                    f"the keys flatten to CSV column '{column}' twice (a key containing '.' collides with a "
                    "nested key); rename one, or set the destination's format to jsonl"))])
                return None
        if not self.events:
            if find_profile_identity(record) is None:
                self._invalid(number, [(None, f"profile has no identity (looked for: {_LOOKED_FOR_IDENTITY})")])
                return None
            return ""
        wrong: list[tuple[str | None, str]] = []
        name = record.get("event")
        if (type(name) is not str or not name or name.isspace()) and find_event_name(record) is None:
            wrong.append(_name_problem(record))
        found = find_event_time(record)
        if found is None:
            wrong.append((None, f"event has no time (looked for: {_LOOKED_FOR_TIME})"))
        else:
            try:
                us = epoch_microseconds(found[1])
            except EventTimeError as exc:
                wrong.append((found[0], f"event time '{found[0]}' = {_preview(found[1])} {exc.reason}"))
        if wrong:
            self._invalid(number, wrong)
            return None
        hour = us // US_PER_HOUR
        key = self._keys_by_hour.get(hour)
        if key is None:
            key = self._keys_by_hour[hour] = partition_key_for_microseconds(us)
        return key

    def stage(self, key: str, record: dict[str, Any], line: bytes, number: int) -> None:
        partition = self.partitions.get(key)
        if partition is None:
            partition = self.partitions[key] = StagedPartition(key)
            self._columns[key] = PartitionColumns()
            partition.columns = self._columns[key].columns
        partition.add(line)
        self.total_bytes += len(line) + 1
        self._columns[key].add(record, line)
        if self.max_columns is not None and len(partition.columns) > self.max_columns:
            where = f"{self.unit} {number}"
            self.refuse_body(number, where, (
                f"{where}: the records{_partition_words(key)} have more than {self.max_columns} distinct CSV "
                "columns, the limit of a CSV destination (MAX_CSV_COLUMNS); send fewer distinct keys, or set the "
                "destination's format to jsonl"))

    def restart(self) -> None:
        """Forget every record read so far (the body is read again another way)."""
        settings = (self.unique_columns, self.max_containers, self.max_columns)
        self.__init__(self.record_type, self.max_problems, self.unit)  # type: ignore[misc]
        self.unique_columns, self.max_containers, self.max_columns = settings

    def too_many_containers(self, number: int) -> None:
        self.records += 1
        where = f"{self.unit} {number}"
        self.refuse_body(number, where, (
            f"{where}: the record holds more than {self.max_containers} objects and arrays, the limit per "
            "record (MAX_RECORD_CONTAINERS)"))

    def malformed(self, number: int, column: int, reason: str) -> None:
        self.records += 1
        if self.records == 1 and reason == GZIPPED_LINE:  # gzip from the first line on: the whole body is
            self.refuse_body(0, "body", GZIP_TEXT)
            return
        self._invalid(number, [(None, f"malformed JSON at column {column}: {reason}")])

    def refuse_body(self, line: int, where: str, message: str) -> None:
        self.body_problem = message
        self.problems.append(RecordProblem(line, None, message, where))

    def result(self) -> ParsedBatch:
        if self.body_problem is not None:
            raise RecordsRejected(self.body_problem, self.problems)
        if self.problems:
            raise RecordsRejected(self._summary(), self.problems)
        if self.records == 0:
            message = "no records: the body is empty or holds only blank lines"
            raise RecordsRejected(message, [RecordProblem(0, None, message, "body")])
        return ParsedBatch(self.record_type, self.records, self.partitions, self.total_bytes)

    def _invalid(self, number: int, wrong: list[tuple[str | None, str]]) -> None:
        self.invalid += 1
        where = f"{self.unit} {number}"
        for field_name, text in wrong:
            if not self.full:
                self.problems.append(RecordProblem(number, field_name, f"{where}: {text}", where))
        if self.full and self.stopped_at is None:
            self.stopped_at = number

    def _summary(self) -> str:
        if self.stopped_at is not None:
            return (
                f"at least {self.invalid} records are invalid (checking stopped at {self.unit} "
                f"{self.stopped_at} after {len(self.problems)} problems); nothing was accepted"
            )
        verb = "is" if self.invalid == 1 else "are"
        return f"{self.invalid} of {self.records} records {verb} invalid; nothing was accepted"


def _read_ndjson_lines(body: bytes | bytearray, start: int, stop: int, intake: _Intake, number: int, *,
                       final: bool) -> int:
    """Check and stage the lines of ``body[start:stop]``, numbered from ``number + 1``; returns the last number.
    Each line ends with a newline, except the last one when ``final`` (it may be empty: it is counted, as
    ``split`` would count it). A line at a time: splitting would copy the whole body into a list first."""
    loads = orjson.loads
    check = intake.check
    stage = intake.stage
    limit = intake.max_containers
    with memoryview(body) as view:  # released on return: a bytearray being fed can then be cut
        while start < stop or (final and start == stop):
            end = body.find(b"\n", start, stop)
            if end < 0:
                end = stop
            number += 1
            raw = bytes(view[start:end])
            start = end + 1
            line = raw.strip()
            if not line:
                continue
            if limit is not None and containers_over(line, limit):
                intake.too_many_containers(number)
                return number
            try:
                record = loads(line)
            except orjson.JSONDecodeError as exc:
                _, column = error_position(exc, line)
                indent = len(raw) - len(raw.lstrip())  # ASCII whitespace: characters = bytes
                intake.malformed(number, column + indent, json_error_reason(exc, line, ndjson=True))
            else:
                key = check(record, number)
                if key is not None and not intake.problems:
                    if 13 in line:  # a lone CR between tokens: some readers would split the line there
                        line = line.replace(b"\r", b" ")
                    stage(key, record, line, number)
            if intake.full:
                return number
    return number


class _NdjsonText:
    """The text of an NDJSON body (after any byte order mark), checked and staged a line at a time as it
    arrives: only the start of a line not complete yet is kept."""

    def __init__(self, intake: _Intake) -> None:
        self._intake = intake
        self._pending = bytearray()  # the start of a line not complete yet
        self._number = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self._intake.full:
            return  # refused already; the rest of the body is only read (and its size limited)
        self._pending += data
        cut = self._pending.rfind(b"\n") + 1
        if cut:
            self._number = _read_ndjson_lines(self._pending, 0, cut, self._intake, self._number, final=False)
            del self._pending[:cut]

    def finish(self) -> None:
        if not self._intake.full:
            _read_ndjson_lines(self._pending, 0, len(self._pending), self._intake, self._number, final=True)
        self._pending = bytearray()


def _name_problem(record: dict[str, Any]) -> tuple[str | None, str]:
    for key in EVENT_NAME_KEYS:
        if record.get(key) is not None:
            return key, f"event name '{key}' = {_preview(record[key])} is not a non-empty string"
    return None, f"event has no name (looked for: {_LOOKED_FOR_NAME})"


def _partition_words(key: str) -> str:
    return f" of partition '{key}'" if key else ""


def _preview(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
