"""Hostile input, property-based: any JSON object is accepted and comes back exactly, or is refused in words.

Goes further than the properties in tests/shared: keys of any kind (".", "", unicode, NUL, quotes, lone
surrogates), floats including NaN and infinities, integers up to and past the range of a double, bodies
with BOM / CRLF / blank lines / indentation, and the whole pure path intake -> staged lines -> JSONL
and CSV files, checked against an independent model of the documented rules (not the product's own
flattening). The scale knob is RELIABILITY_SCALE (see hostile_support).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.formats.csv_cells import flatten_record
from shared.formats.exact_json import RecordError, parse_exact
from shared.formats.flatten import flattened_keys
from shared.formats.serialization import PartEncoder
from shared.intake.event_time import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    PROFILE_IDENTITY_KEYS,
    PROPERTIES_TIME_KEYS,
    EventTimeError,
    epoch_microseconds,
    find_event_time,
    parse_event_time,
    partition_key_for_microseconds,
)
from shared.intake.records import RecordsRejected, parse_batch
from tests.reliability.hostile_support import examples

PROPERTY = settings(
    max_examples=examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- Strategies: JSON values a hostile or careless sender produces ----------------------------------------------

NASTY_KEYS = st.sampled_from(
    ["", ".", "..", "a.b", ".a", "a.", "a..b", "\u0000", "\n", "\r", "\t", '"', ",", "\\", "é", "日本語", "😀",
     "\u2028", "\ufeff", "key with spaces", "$insert_id", "properties"]
)
NASTY_STRINGS = st.sampled_from(["\u0000", "a\u0000b", "line\r\nbreak", "\r", '"quoted"', "a,b", "\ufeffbom", "\u2028",
                                 "😀", "1e400", "NaN", "-0", "true", "null", ""])
HUGE_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**19, 10**30, -(10**30), 10**100, 10**308,
                             -(10**308)])
ODD_FLOATS = st.sampled_from([0.0, -0.0, 5e-324, 1e-7, 1e16, 1.5, 0.1, 1e308, 3.141592653589793, 2.0**53 + 2])


def json_values() -> st.SearchStrategy[Any]:
    """Any value JSON text can carry: every code point but lone surrogates, any finite double, integers up
    to the range of a double, nested lists and objects with hostile keys."""
    text = st.characters(blacklist_categories=["Cs"])
    keys = st.one_of(st.text(text, max_size=6), NASTY_KEYS)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70) | HUGE_INTS,
        st.floats(allow_nan=False, allow_infinity=False) | ODD_FLOATS,
        st.text(text, max_size=12) | NASTY_STRINGS,
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4), max_leaves=16
    )


JSON_VALUES = json_values()
KEYS = st.one_of(st.text(st.characters(blacklist_categories=["Cs"]), max_size=6), NASTY_KEYS)
# What JSON text cannot carry: refused wherever it sits.
TROUBLE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "a\udfffb", 10**309, -(10**309), 10**400, 2**1024]),
    st.sampled_from([[1, math.nan], {"k": "\udc00"}, {"\ud83d": 1}, [[10**400]]]),
)

_RESERVED_TOP = {*EVENT_NAME_KEYS, *EVENT_TIME_KEYS, *PROFILE_IDENTITY_KEYS, "properties", "$properties"}
GOOD_NAMES = st.text(min_size=1, max_size=8).filter(lambda name: not name.isspace())
IN_RANGE = st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))


@st.composite
def objects(draw: st.DrawFn, clean: bool) -> dict[str, Any]:
    """Any JSON object at the top level of a record (keys the platforms reserve left out), now and then
    with two fields that become the same CSV column ({"a.b": 1, "a": {"b": 2}}), and unless ``clean``
    now and then a value JSON text cannot carry, somewhere."""
    keys = KEYS.filter(lambda key: key not in _RESERVED_TOP)
    record: dict[str, Any] = draw(st.dictionaries(keys, JSON_VALUES, max_size=6))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        outer, inner = draw(keys), draw(KEYS)
        record[f"{outer}.{inner}"] = draw(JSON_VALUES)
        record[outer] = {inner: draw(JSON_VALUES)}
    if not clean and draw(st.integers(min_value=0, max_value=5)) == 0:
        holder = record
        for key in draw(st.lists(keys, max_size=3)):  # at the top level or nested a few levels down
            child: dict[str, Any] = {}
            holder[key] = child
            holder = child
        holder[draw(keys)] = draw(TROUBLE)
    return record


@st.composite
def hostile_events(draw: st.DrawFn, clean: bool = False) -> dict[str, Any]:
    """Any JSON object, plus an event name and a valid event time under one of the platforms' keys."""
    record = draw(objects(clean))
    record[draw(st.sampled_from(EVENT_NAME_KEYS))] = draw(GOOD_NAMES)
    moment = draw(IN_RANGE)
    record[draw(st.sampled_from(EVENT_TIME_KEYS))] = draw(
        st.sampled_from([int(moment.timestamp()), int(moment.timestamp() * 1000), moment.isoformat()])
    )
    return record


@st.composite
def hostile_profiles(draw: st.DrawFn) -> dict[str, Any]:
    record = draw(objects(clean=False))
    record[draw(st.sampled_from(PROFILE_IDENTITY_KEYS))] = draw(GOOD_NAMES | st.integers(min_value=0, max_value=2**62))
    return record


# --- An independent model of what must happen ---------------------------------------------------------------------


def trouble(value: Any) -> str | None:
    """Why JSON text holding ``value`` must be refused, or None: NaN/Infinity (not JSON), a lone surrogate
    (not a character), or an integer beyond the range of a double (orjson cannot hold it)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN and Infinity"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return "too large"
        return None
    if isinstance(value, str):
        return "surrogate" if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value) else None
    if isinstance(value, list):
        return next(filter(None, map(trouble, value)), None)
    for key, item in value.items():
        found = trouble(key) or trouble(item)
        if found:
            return found
    return None


def canonical(value: Any) -> str:
    """Type-strict, order-keeping text of a value (``True`` and ``1`` differ, as do ``1`` and ``1.0``)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def model_cells(record: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(column, value) pairs by the documented CSV rules: nested objects joined with ".", an empty object
    or any list is one cell, every other value one cell. Duplicates mean a collision."""
    cells: list[tuple[str, Any]] = []
    for key, value in record.items():
        if isinstance(value, dict) and value:
            cells.extend(model_cells(value, f"{prefix}{key}."))
        else:
            cells.append((prefix + key, value))
    return cells


def cell_matches(cell: str, value: Any) -> bool:
    if value is None:
        return cell == ""
    if value is True or value is False:
        return cell == ("true" if value else "false")
    if isinstance(value, str):
        return cell == value
    if isinstance(value, int):
        return cell == str(value)
    if isinstance(value, float):
        return float(cell) == value and "inf" not in cell.lower() and "nan" not in cell.lower()
    # lists and the empty object: their JSON text, numbers exact
    return canonical(json.loads(cell)) == canonical(value)


def encode_body(records: list[dict[str, Any]], kind: str, style: dict[str, Any]) -> bytes:
    dumps = {"ensure_ascii": style["ascii"], "allow_nan": True}
    if kind == "ndjson":
        separators = (", ", ": ") if style["spaced"] else (",", ":")
        lines = [json.dumps(record, separators=separators, **dumps) for record in records]
        end = "\r\n" if style["crlf"] else "\n"
        text = end.join(lines) + (end if style["trailing"] else "")
        if style["blank"]:
            text = end + text + end + "  " + end
    else:
        text = json.dumps(records, indent=style["indent"], **dumps)
        if style["crlf"]:
            text = text.replace("\n", "\r\n")
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate sent raw is invalid UTF-8
    return (b"\xef\xbb\xbf" + data) if style["bom"] else data


STYLES = st.fixed_dictionaries({
    "ascii": st.booleans(), "spaced": st.booleans(), "crlf": st.booleans(), "trailing": st.booleans(),
    "blank": st.booleans(), "bom": st.booleans(), "indent": st.sampled_from([None, 0, 2, "\t"]),
})


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def encode_part(fmt: str, compression: str, lines: list[bytes], columns: list[str] | None) -> bytes:
    encoder = PartEncoder(fmt, compression, columns)  # type: ignore[arg-type]
    chunks = [encoder.feed(lines[: len(lines) // 2]), encoder.feed(lines[len(lines) // 2 :]), encoder.close()]
    data = b"".join(chunk.data for chunk in chunks)
    return gzip.decompress(data) if compression == "gzip" else data


def check_refusal(error: RecordsRejected, body_lines: int) -> None:
    """Each problem says where: a text line within the body, or, in a JSON array, the element ("record N",
    whose `line` is N: a one-line array can hold many records)."""
    assert error.message and error.problems
    for problem in error.problems:
        assert problem.message and problem.where
        if problem.where.startswith("record "):
            assert problem.line == int(problem.where.removeprefix("record ")) >= 1
        else:
            assert 0 <= problem.line <= max(body_lines, 1)


# --- Record validation and staging ------------------------------------------------------------------------------


@PROPERTY
@given(
    records=st.lists(hostile_events(), min_size=1, max_size=4),
    kind=st.sampled_from(["ndjson", "json"]),
    style=STYLES,
)
def test_any_event_object_is_staged_exactly_or_refused_in_words(
    records: list[dict[str, Any]], kind: str, style: dict[str, Any]
) -> None:
    body = encode_body(records, kind, style)
    reasons = [trouble(record) for record in records]
    try:
        batch = parse_batch(body, kind, "events")  # type: ignore[arg-type]
    except RecordsRejected as error:
        event(f"refused: {next(filter(None, reasons), 'nothing wrong')}")
        assert any(reasons), f"a valid batch was refused: {error.message} {error.problems[:2]}"
        check_refusal(error, body.count(b"\n") + 1)
        return
    assert not any(reasons), f"accepted a batch holding {next(filter(None, reasons))}"
    staged = [line for part in batch.partitions.values() for line in part.lines]
    assert batch.record_count == len(staged) == len(records)
    assert batch.total_bytes == sum(len(line) + 1 for line in staged)
    for line in staged:
        assert b"\n" not in line and b"\r" not in line
        line.decode("utf-8")  # staged text is valid UTF-8
    # Each record comes back exactly (same keys in the same order, same types, same numbers).
    assert sorted(canonical(json.loads(line)) for line in staged) == sorted(map(canonical, records))
    if kind == "ndjson":  # staged as the very bytes that were sent
        sent = {line.strip() for line in body.removeprefix(b"\xef\xbb\xbf").split(b"\n")}
        assert all(line in sent for line in staged)
    for part in batch.partitions.values():
        us = {epoch_microseconds(find_event_time(json.loads(line))[1]) for line in part.lines}  # type: ignore[index]
        assert {partition_key_for_microseconds(u) for u in us} == {part.key}
        assert part.columns == {c for line in part.lines for c in flattened_keys(json.loads(line))}


@PROPERTY
@given(records=st.lists(hostile_profiles(), min_size=1, max_size=4), kind=st.sampled_from(["ndjson", "json"]))
def test_any_profile_object_is_staged_exactly_or_refused_in_words(records: list[dict[str, Any]], kind: str) -> None:
    body = encode_body(records, kind, {"ascii": False, "spaced": False, "crlf": False, "trailing": True,
                                       "blank": False, "bom": False, "indent": None})
    reasons = [trouble(record) for record in records]
    try:
        batch = parse_batch(body, kind, "profiles")  # type: ignore[arg-type]
    except RecordsRejected as error:
        assert any(reasons), f"a valid batch was refused: {error.message}"
        check_refusal(error, len(records))
        return
    assert not any(reasons)
    assert list(batch.partitions) == [""]
    assert [canonical(json.loads(line)) for line in batch.partitions[""].lines] == list(map(canonical, records))


@PROPERTY
@given(body=st.binary(max_size=300), kind=st.sampled_from(["ndjson", "json"]),
       record_type=st.sampled_from(["events", "profiles"]))
def test_any_bytes_are_accepted_or_refused_never_a_crash(body: bytes, kind: str, record_type: str) -> None:
    try:
        batch = parse_batch(body, kind, record_type)  # type: ignore[arg-type]
    except RecordsRejected as error:
        check_refusal(error, body.count(b"\n") + 1)
    else:
        assert batch.record_count >= 1


@PROPERTY
@given(
    records=st.lists(st.one_of(hostile_events(), JSON_VALUES), min_size=1, max_size=3),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.binary(min_size=1, max_size=4),
)
def test_damaged_json_is_refused_never_a_crash(records: list[Any], cut: int, junk: bytes) -> None:
    """Valid text with bytes cut out or spliced in: refused with a line number, or still valid JSON."""
    body = encode_body(records, "ndjson", {"ascii": False, "spaced": False, "crlf": False, "trailing": False,
                                           "blank": False, "bom": False, "indent": None})
    damaged = body[:cut] + junk + body[cut + len(junk) :]
    for kind in ("ndjson", "json"):
        try:
            parse_batch(damaged, kind, "events")  # type: ignore[arg-type]
        except RecordsRejected as error:
            check_refusal(error, damaged.count(b"\n") + 1)


# --- Event-time extraction ------------------------------------------------------------------------------------


@PROPERTY
@given(value=JSON_VALUES | st.text() | st.integers() | st.floats())
def test_any_value_is_an_event_time_in_range_or_a_reason(value: Any) -> None:
    try:
        us = epoch_microseconds(value)
    except EventTimeError as error:
        assert error.reason and str(error)
        assert len(str(error)) < 400  # a preview, never a whole hostile value
        return
    assert 0 <= us < (datetime(2101, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert parse_event_time(value) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@PROPERTY
@given(moment=IN_RANGE, zone=OFFSETS, style=st.sampled_from(["T", " ", "z", "lower", "naive", "ms", "date"]))
def test_iso_times_in_any_zone_land_at_the_same_instant(moment: datetime, zone: timezone, style: str) -> None:
    local = moment.astimezone(zone)
    if style == "naive":
        text, expected = moment.replace(tzinfo=None).isoformat(), moment
    elif style == "date":
        text, expected = f"{moment:%Y-%m-%d}", moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif style == "ms":
        text = local.isoformat(timespec="milliseconds")
        expected = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    else:
        text, expected = local.isoformat(sep="T" if style != " " else " "), moment
        if style in ("z", "lower") and zone.utcoffset(None) == timedelta(0):
            text = text.replace("+00:00", "Z")
        if style == "lower":
            text = text.lower()
    assert parse_event_time(text) == expected
    us = epoch_microseconds(text)
    assert partition_key_for_microseconds(us) == f"date={expected:%Y-%m-%d}/hour={expected:%H}"


@PROPERTY
@given(moment=IN_RANGE, unit=st.sampled_from([1, 1000, 1_000_000, 1_000_000_000]), as_text=st.booleans())
def test_epoch_numbers_in_every_unit_land_in_the_same_hour(moment: datetime, unit: int, as_text: bool) -> None:
    seconds = int(moment.timestamp())
    value: Any = seconds * unit
    if as_text:
        value = str(value)
    assert partition_key_for_microseconds(epoch_microseconds(value)) == f"date={moment:%Y-%m-%d}/hour={moment:%H}"
    assert parse_event_time(value) == moment.replace(microsecond=0)


@PROPERTY
@given(record=st.dictionaries(st.one_of(KEYS, st.sampled_from([*EVENT_TIME_KEYS, "properties"])), JSON_VALUES),
       nested=st.dictionaries(st.one_of(KEYS, st.sampled_from(PROPERTIES_TIME_KEYS)), JSON_VALUES, max_size=3))
def test_find_event_time_takes_the_first_non_null_key_in_documented_order(
    record: dict[str, Any], nested: dict[str, Any]
) -> None:
    if "properties" in record and not isinstance(record["properties"], dict):
        record["properties"] = nested
    found = find_event_time(record)
    expected = next(((k, record[k]) for k in EVENT_TIME_KEYS if record.get(k) is not None), None)
    if expected is None and isinstance(record.get("properties"), dict):
        props = record["properties"]
        expected = next(((f"properties.{k}", props[k]) for k in PROPERTIES_TIME_KEYS if props.get(k) is not None),
                        None)
    assert found == expected


# --- Flattening and both serializers ----------------------------------------------------------------------------


@PROPERTY
@given(record=objects(clean=True))
def test_flattening_follows_the_documented_rules_or_names_the_collision(record: dict[str, Any]) -> None:
    model = model_cells(record)
    names = [name for name, _ in model]
    assert list(flattened_keys(record)) == names  # intake's columns: same names, same order
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        with pytest.raises(ValueError, match="CSV column") as caught:
            flatten_record(record)
        assert any(repr(name) in str(caught.value) for name in duplicates)
        return
    cells = flatten_record(record)
    assert list(cells) == names
    for name, value in model:
        assert cell_matches(cells[name], value), (name, cells[name], value)


@PROPERTY
@given(
    records=st.lists(hostile_events(clean=True), min_size=1, max_size=5),
    kind=st.sampled_from(["ndjson", "json"]),
    compression=st.sampled_from(["gzip", "none"]),
)
def test_intake_to_jsonl_and_csv_files_round_trip_or_refuse(
    records: list[dict[str, Any]], kind: str, compression: str
) -> None:
    """The pure export path: parse_batch -> staged lines and columns -> PartEncoder -> what a reader sees."""
    body = encode_body(records, kind, {"ascii": False, "spaced": False, "crlf": False, "trailing": True,
                                       "blank": False, "bom": False, "indent": None})
    batch = parse_batch(body, kind, "events")  # type: ignore[arg-type]
    for part in batch.partitions.values():
        jsonl = encode_part("jsonl", compression, part.lines, None)
        assert jsonl == b"".join(line + b"\n" for line in part.lines)
        originals = [json.loads(line) for line in part.lines]
        collide = [record for record in originals if len({n for n, _ in model_cells(record)})
                   != len(model_cells(record))]
        columns = sorted(part.columns)
        event("csv collision refused" if collide else "csv round trip")
        if collide:
            with pytest.raises(RecordError, match="CSV column"):
                encode_part("csv", compression, part.lines, columns)
            continue
        text = encode_part("csv", compression, part.lines, columns).decode("utf-8")
        header, *rows = list(csv.reader(io.StringIO(text, newline="")))
        assert header == columns
        assert len(rows) == len(originals)
        for record, row in zip(originals, rows, strict=True):
            cells = dict(zip(header, row, strict=True))
            model = dict(model_cells(record))
            for column in columns:
                if column in model:
                    assert cell_matches(cells[column], model[column]), (column, cells[column], model[column])
                else:
                    assert cells[column] == ""


@PROPERTY
@given(record=objects(clean=True),
       separators=st.sampled_from([(",", ":"), (", ", ": ")]))
def test_parse_exact_keeps_every_number_as_sent(record: dict[str, Any], separators: tuple[str, str]) -> None:
    line = json.dumps(record, ensure_ascii=False, separators=separators).encode()
    parsed = parse_exact(line)
    assert list(parsed) == list(record)
    # Integers come back as ints of the same value; floats as the same double.
    assert json.loads(canonical_numbers(parsed)) == json.loads(canonical(record))


def canonical_numbers(value: Any) -> str:
    """JSON text of parse_exact's result (JsonNumber literals as numbers)."""
    from shared.formats.exact_json import json_text

    return json_text(value)


@pytest.mark.parametrize(
    "literal",
    [b"1e400", b"-1e400", b"1" * 400, b"1" * 5000, b"1e-400", b"0." + b"0" * 400 + b"1", b"-0", b"1E+2",
     b"123456789012345678901234567890.123456789"],
)
def test_extreme_number_literals_are_refused_or_kept_byte_exact(literal: bytes) -> None:
    line = b'{"event":"e","ts":1700000000,"n":' + literal + b"}"
    try:
        batch = parse_batch(line, "ndjson", "events")
    except RecordsRejected as error:
        assert "too large for a 64-bit float" in error.problems[0].message
        assert float(literal) in (math.inf, -math.inf)
        return
    [part] = batch.partitions.values()
    assert part.lines == [line]  # staged as sent
    assert encode_part("jsonl", "none", part.lines, None) == line + b"\n"
    csv_text = encode_part("csv", "none", part.lines, sorted(part.columns)).decode()
    header, row = list(csv.reader(io.StringIO(csv_text, newline="")))
    cell = dict(zip(header, row, strict=True))["n"]
    assert Decimal(cell) == Decimal(literal.decode())  # the exact value, never a rounded double


def test_the_model_agrees_with_a_hand_written_case() -> None:
    """Guard the oracle itself: a record with dots, an empty key, NUL and a big number."""
    record = {"a.b": 1, "": {"x": [1, {"y": None}]}, "\u0000": "nul", "n": 10**30, "e": {}}
    assert model_cells(record) == [("a.b", 1), (".x", [1, {"y": None}]), ("\u0000", "nul"), ("n", 10**30), ("e", {})]
    assert trouble(record) is None and trouble({"k": math.nan}) and trouble({"\ud800": 1}) and trouble([10**400])
