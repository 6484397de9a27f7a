"""A chunk of staged lines sorted out for the files they go to: events left out by the destination's filters, its
dropped properties removed, and, when its folders name the event, each record under its event's name (pure).

Records leave this module in the order they were staged. A line whose record nothing changed is moved as it is
(byte for byte); a record that lost properties is written back as compact JSON with its numbers exact
(``exact_json``), its keys in their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.formats.exact_json import RecordError, json_text, parse_chunk
from shared.formats.record_fields import EventTimeError, event_microseconds, find_event_name
from shared.formats.record_filters import RecordFilter


@dataclass
class Routed:
    """The records of a chunk that go to one file: their lines and, when they were parsed, the records themselves,
    with the event names and times found before any property was dropped."""

    lines: list[bytes] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None
    names: list[str | None] | None = None
    times: list[int] | None = None


def route_chunk(lines: Sequence[bytes], record_type: str, rules: RecordFilter, *, by_event: bool = False,
                parsed: bool = False) -> dict[str | None, Routed]:
    """The chunk's records by the event name their file is for (None: one file for all), filtered and dropped.

    `parsed`: the caller needs the parsed records (Parquet); each record is then parsed once, here.
    """
    events = record_type == "events"
    needs_names = events and (by_event or rules.filters_events)
    if not (needs_names or rules.drops or parsed):
        return {None: Routed(list(lines))}
    records = parse_chunk(lines) if (parsed or rules.drops) else _names_only(lines)
    routed: dict[str | None, Routed] = {}
    for index, (line, record) in enumerate(zip(lines, records, strict=True)):
        name = find_event_name(record) if events else None
        if not rules.keeps_event(name):
            continue
        time = None
        if rules.drops and parsed and events:
            try:
                time = event_microseconds(record)  # before a dropped field could take it away
            except EventTimeError as exc:
                raise RecordError(index, f"record {index + 1} of the chunk: the event time {exc}") from None
        if rules.drops and rules.drop_from(record):
            line = json_text(record).encode()
        target = routed.get(name if by_event else None)
        if target is None:
            target = routed[name if by_event else None] = Routed(
                records=[] if parsed else None, names=[] if parsed and events else None,
                times=[] if time is not None else None)
        target.lines.append(line)
        if target.records is not None:
            target.records.append(record)
        if target.names is not None:
            target.names.append(name)
        if target.times is not None and time is not None:
            target.times.append(time)
    return routed


def _names_only(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    """The records, parsed only to read their names (numbers need not be exact): one orjson call for the chunk."""
    try:
        records = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:  # a number orjson refuses (1e400): the exact parser takes it
        return parse_chunk(lines)
    if type(records) is not list or len(records) != len(lines) or not all(type(r) is dict for r in records):
        return parse_chunk(lines)  # which names the bad line
    return records
