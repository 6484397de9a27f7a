"""Batch intake: platform shapes accepted, bad input refused whole with line numbers, values kept exact."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.formats.flatten import flattened_keys
from shared.intake.records import ParsedBatch, RecordsRejected, parse_batch


def ndjson(*records: Any) -> bytes:
    return b"\n".join(json.dumps(record).encode() for record in records) + b"\n"


def only_partition(batch: ParsedBatch) -> tuple[str, list[bytes], set[str]]:
    assert len(batch.partitions) == 1
    (part,) = batch.partitions.values()
    return part.key, part.lines, part.columns


def rejected(body: bytes, kind: str = "ndjson", record_type: str = "events", **kwargs: Any) -> RecordsRejected:
    with pytest.raises(RecordsRejected) as caught:
        parse_batch(body, kind, record_type, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- realistic records, one per platform ---------------------------------------------------------

EVENTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "Mixpanel import (properties.time in ms)",
        {
            "event": "Purchase",
            "properties": {
                "time": 1618716477000,
                "distinct_id": "91304156-cafc-4673-a237-623d1129c801",
                "$insert_id": "935d87b1-00cd-41b7-be34-b9d98dd08b42",
                "Item": "Coffee",
                "Amount": 5.0,
            },
        },
        "date=2021-04-18/hour=03",
    ),
    (
        "Mixpanel raw export (properties.time in s)",
        {
            "event": "Signed up",
            "properties": {
                "time": 1602611311,
                "$insert_id": "ABCDE",
                "mp_processing_time_ms": 1602625711874,
                "distinct_id": "user123",
            },
        },
        "date=2020-10-13/hour=17",
    ),
    (
        "Segment track",
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "97980cfea0067",
            "anonymousId": "507f191e810c19729de860ea",
            "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
            "timestamp": "2015-02-23T22:28:55.111Z",
            "originalTimestamp": "2015-02-23T22:28:55.387Z",
            "receivedAt": "2015-02-23T22:28:55.387Z",
            "context": {"ip": "8.8.8.8", "library": {"name": "analytics.js", "version": "2.11.1"}},
            "properties": {"revenue": 39.95, "products": [{"product_id": "507f1f77bcf86cd799439011", "price": 19}]},
        },
        "date=2015-02-23/hour=22",
    ),
    (
        "Amplitude HTTP V2 upload (time in ms)",
        {
            "user_id": "203201202",
            "device_id": "C8F9E604-F01A-4BD9-95C6-8E5357DF265D",
            "event_type": "watch_tutorial",
            "time": 1396381378123,
            "event_properties": {"load_time": 0.8371},
            "insert_id": "5f0adeff-6668-4427-8d02-57d803a2b841",
        },
        "date=2014-04-01/hour=19",
    ),
    (
        "Amplitude export (event_time without zone)",
        {
            "event_type": "Played Song",
            "event_time": "2015-08-10 21:56:14.123000",
            "client_event_time": "2015-08-10 21:56:13.000000",
            "server_upload_time": "2015-08-10 21:56:15.000000",
            "user_id": "user@example.com",
            "amplitude_id": 1234567890,
            "event_properties": {"genre": "jazz"},
            "user_properties": {},
            "$insert_id": "a",
        },
        "date=2015-08-10/hour=21",
    ),
    (
        "CleverTap upload (ts in epoch s)",
        {
            "type": "event",
            "identity": "jack@gmail.com",
            "ts": 1497367620,
            "evtName": "Charged",
            "evtData": {"Amount": 300, "Currency": "USD", "Items": [{"Category": "books", "Quantity": 1}]},
        },
        "date=2017-06-13/hour=15",
    ),
    (
        "CleverTap export (ts as YYYYMMDDHHMMSS)",
        {
            "profile": {"identity": "dqsndckfk234", "objectId": "__g1a2b3", "platform": "Android"},
            "ts": 20171109000015,
            "eventName": "App Launched",
            "eventProps": {"ct_latitude": -6.1975594, "ct_longitude": 106.52913, "ct_sdk_version": 30107},
        },
        "date=2017-11-09/hour=00",
    ),
    (
        "PostHog capture",
        {
            "event": "$pageview",
            "distinct_id": "018daf23-89b3-7cf8-a4f1-94064c96df90",
            "timestamp": "2024-05-22T17:09:29.220Z",
            "properties": {"$current_url": "https://example.com/", "$browser": "Chrome"},
        },
        "date=2024-05-22/hour=17",
    ),
]


@pytest.mark.parametrize("kind", ["ndjson", "json"])
@pytest.mark.parametrize(("label", "record", "key"), EVENTS, ids=[case[0] for case in EVENTS])
def test_platform_event_is_accepted_into_its_hour(label: str, record: dict[str, Any], key: str, kind: str) -> None:
    body = ndjson(record) if kind == "ndjson" else json.dumps([record], indent=2).encode()
    batch = parse_batch(body, kind, "events")  # type: ignore[arg-type]
    part_key, lines, columns = only_partition(batch)
    assert part_key == key
    assert batch.record_type == "events"
    assert batch.record_count == 1
    assert [json.loads(line) for line in lines] == [record]
    assert columns == set(flattened_keys(record))
    assert batch.total_bytes == len(lines[0]) + 1


PROFILES: list[tuple[str, dict[str, Any]]] = [
    (
        "CleverTap upload profile",
        {
            "type": "profile",
            "identity": "6264372124",
            "ts": 1497367620,
            "profileData": {"favoriteColor": "green", "Age": 30, "Birthday": "$D_1497367620"},
        },
    ),
    (
        "CleverTap profile by objectId",
        {
            "type": "profile",
            "objectId": "-2ce3cca260664f70b82b1c6bb505f462",
            "profileData": {"favoriteFood": "hot dogs"},
        },
    ),
    (
        "Mixpanel engage update",
        {"$token": "YOUR_PROJECT_TOKEN", "$distinct_id": "13793", "$set": {"$email": "user1@mail.com"}},
    ),
    (
        "Mixpanel engage query result",
        {
            "$distinct_id": 4,
            "$properties": {
                "$created": "2008-12-12T11:20:47",
                "$email": "example@mixpanel.com",
                "$last_seen": "2008-06-09T23:08:40",
            },
        },
    ),
    (
        "Segment identify",
        {"type": "identify", "userId": "97980cfea0067", "traits": {"email": "peter@example.com", "plan": "premium"}},
    ),
    ("Amplitude user", {"user_id": "user@example.com", "device_id": "C8F9E604", "user_properties": {"plan": "pro"}}),
    (
        "PostHog person",
        {"distinct_id": "018daf23", "properties": {"email": "a@example.com", "$initial_os": "Mac OS X"}},
    ),
]


@pytest.mark.parametrize("kind", ["ndjson", "json"])
@pytest.mark.parametrize(("label", "record"), PROFILES, ids=[case[0] for case in PROFILES])
def test_platform_profile_is_accepted_into_one_partition(label: str, record: dict[str, Any], kind: str) -> None:
    body = ndjson(record, record) if kind == "ndjson" else json.dumps([record, record]).encode()
    batch = parse_batch(body, kind, "profiles")  # type: ignore[arg-type]
    part_key, lines, columns = only_partition(batch)
    assert part_key == ""
    assert batch.record_count == 2
    assert [json.loads(line) for line in lines] == [record, record]
    assert columns == set(flattened_keys(record))


TIMES: list[tuple[object, str]] = [
    (1618716477, "date=2021-04-18/hour=03"),
    (1618716477123, "date=2021-04-18/hour=03"),
    (1618716477123456, "date=2021-04-18/hour=03"),
    (1618716477123456789, "date=2021-04-18/hour=03"),
    (1618716477.9, "date=2021-04-18/hour=03"),
    ("1618716477000", "date=2021-04-18/hour=03"),
    (20191012093020, "date=2019-10-12/hour=09"),
    (20191012, "date=2019-10-12/hour=00"),
    ("$D_1497367620", "date=2017-06-13/hour=15"),
    ("2015-08-10 21:56:14.123000", "date=2015-08-10/hour=21"),
    ("2024-05-22T17:09:29+05:30", "date=2024-05-22/hour=11"),
    ("2024-05-22T23:30:00-01:00", "date=2024-05-23/hour=00"),
    ("2024-05-22", "date=2024-05-22/hour=00"),
]


@pytest.mark.parametrize(("value", "key"), TIMES, ids=[repr(case[0]) for case in TIMES])
def test_each_time_encoding_lands_in_its_utc_hour(value: object, key: str) -> None:
    batch = parse_batch(ndjson({"event": "e", "ts": value}), "ndjson", "events")
    assert list(batch.partitions) == [key]


def test_records_spanning_three_hours_make_three_partitions() -> None:
    base = 1_767_225_600  # 2026-01-01T00:00:00Z
    records = [{"event": "tick", "time": (base + minute * 60) * 1000, "n": minute} for minute in range(0, 180, 7)]
    batch = parse_batch(ndjson(*records), "ndjson", "events")
    assert sorted(batch.partitions) == [
        "date=2026-01-01/hour=00",
        "date=2026-01-01/hour=01",
        "date=2026-01-01/hour=02",
    ]
    assert batch.record_count == len(records) == sum(len(p.lines) for p in batch.partitions.values())
    for key, part in batch.partitions.items():
        hour = int(key[-2:])
        assert all(json.loads(line)["n"] // 60 == hour for line in part.lines)
        assert part.columns == {"event", "time", "n"}


# --- refused input: the whole batch, with where and why -----------------------------------------

GOOD = {"event": "ok", "time": 1618716477}

REFUSALS: list[tuple[str, bytes, str, str, list[tuple[int, str | None, str]]]] = [
    # (label, body, kind, record_type, [(line, field, message), ...])
    (
        "bad time names its field",
        ndjson(GOOD, {"event": "e", "properties": {"time": "yesterday"}}),
        "ndjson",
        "events",
        [(2, "properties.time", "line 2: event time 'properties.time' = \"yesterday\" is not a valid date-time")],
    ),
    (
        "no name",
        ndjson({"time": 1618716477}),
        "ndjson",
        "events",
        [(1, None, "line 1: event has no name (looked for: event, eventName, evtName, event_type, event_name, name)")],
    ),
    (
        "name of the wrong type",
        ndjson({"event": 7, "time": 1618716477}),
        "ndjson",
        "events",
        [(1, "event", "line 1: event name 'event' = 7 is not a non-empty string")],
    ),
    (
        "no time",
        ndjson({"event": "e", "receivedAt": "2024-01-01T00:00:00Z"}),
        "ndjson",
        "events",
        [
            (
                1,
                None,
                "line 1: event has no time (looked for: timestamp, event_time, time, ts, originalTimestamp, "
                "client_event_time, event_timestamp, properties.time, properties.timestamp)",
            )
        ],
    ),
    (
        "both name and time wrong",
        ndjson({"event": "", "ts": True}),
        "ndjson",
        "events",
        [
            (1, "event", "line 1: event name 'event' = \"\" is not a non-empty string"),
            (1, "ts", "line 1: event time 'ts' = true is a boolean, not a date-time"),
        ],
    ),
    (
        "time before 1970",
        ndjson({"event": "e", "timestamp": "1969-07-20T20:17:40Z"}),
        "ndjson",
        "events",
        [
            (
                1,
                "timestamp",
                "line 1: event time 'timestamp' = \"1969-07-20T20:17:40Z\" is outside the supported years 1970..2100 "
                "(it is 1969-07-20T20:17:40Z)",
            )
        ],
    ),
    (
        "profile without identity",
        ndjson({"$set": {"plan": "pro"}}),
        "ndjson",
        "profiles",
        [
            (
                1,
                None,
                "line 1: profile has no identity (looked for: identity, objectId, $distinct_id, distinct_id, userId, "
                "anonymousId, user_id, device_id, id, properties.distinct_id, $properties.$distinct_id)",
            )
        ],
    ),
    (
        "array instead of object",
        b'[{"event": "e"}]\n',
        "ndjson",
        "events",
        [(1, None, "line 1: a record must be a JSON object, not an array")],
    ),
    (
        "string, number, null, boolean",
        b'"x"\n5\nnull\ntrue\n',
        "ndjson",
        "events",
        [
            (1, None, "line 1: a record must be a JSON object, not a string"),
            (2, None, "line 2: a record must be a JSON object, not a number"),
            (3, None, "line 3: a record must be a JSON object, not null"),
            (4, None, "line 4: a record must be a JSON object, not a boolean"),
        ],
    ),
    (
        "blank lines still count",
        ndjson(GOOD) + b"\n\n   \n" + b'{"event": "e"}\n',
        "ndjson",
        "events",
        [(5, None, "line 5: event has no time (looked for:")],
    ),
    (
        "malformed line",
        ndjson(GOOD) + b'{"event": "e", "time": 1618716477\n',
        "ndjson",
        "events",
        [(2, None, "line 2: malformed JSON at column 34: the JSON text ends in the middle of a value")],
    ),
    (
        "two records on one line",
        b'{"event":"a","time":1} {"event":"b","time":1}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 24: there is more than one JSON value on the line")],
    ),
    (
        "NaN literal",
        b'{"event":"a","time":1,"v":NaN}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 27: NaN and Infinity are not JSON numbers")],
    ),
    (
        "Infinity literal",
        b'{"event":"a","time":1,"v":-Infinity}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 28: NaN and Infinity are not JSON numbers")],
    ),
    (
        "number overflowing a double",
        b'{"event":"a","time":1,"v":1e400}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 27: a number is too large for a 64-bit float")],
    ),
    (
        "lone surrogate",
        b'{"event":"a","time":1,"v":"\\ud800"}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 28: a \\u escape is a lone UTF-16 surrogate")],
    ),
    (
        "invalid UTF-8",
        b'{"event":"a","time":1}\n{"event":"caf\xe9","time":1}\n',
        "ndjson",
        "events",
        [
            (
                2,
                None,
                "line 2: malformed JSON at column 14: the text is not valid UTF-8 "
                "(byte 0xe9: invalid continuation byte)",
            )
        ],
    ),
    (
        "too deep",
        b'{"event":"a","time":1,"v":' + b"[" * 1100 + b"]" * 1100 + b"}\n",
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON at column 1051: objects and arrays are nested more than 1024 levels deep")],
    ),
    (
        "raw newline inside a string splits the record",
        b'{"event":"a\nb","time":1}\n',
        "ndjson",
        "events",
        [(1, None, "line 1: malformed JSON"), (2, None, "line 2: malformed JSON")],
    ),
    (
        "JSON array: record numbers",
        json.dumps([GOOD, {"event": "e"}, GOOD, 3]).encode(),
        "json",
        "events",
        [(2, None, "record 2: event has no time"), (4, None, "record 4: a record must be a JSON object, not a number")],
    ),
]


@pytest.mark.parametrize(
    ("label", "body", "kind", "record_type", "expected"), REFUSALS, ids=[case[0] for case in REFUSALS]
)
def test_bad_records_refuse_the_whole_batch(
    label: str, body: bytes, kind: str, record_type: str, expected: list[tuple[int, str | None, str]]
) -> None:
    error = rejected(body, kind, record_type)
    assert [(p.line, p.field) for p in error.problems] == [(line, field) for line, field, _ in expected]
    for problem, (line, _, message) in zip(error.problems, expected, strict=True):
        assert problem.message.startswith(message), problem.message
        assert problem.where == f"{'line' if kind == 'ndjson' else 'record'} {line}"
    assert error.message.endswith("nothing was accepted")
    assert str(error) == error.message


def test_summary_counts_invalid_records_of_all() -> None:
    body = ndjson(*([GOOD] * 117), {"event": "x"}, GOOD, {"time": 1}, 5)
    error = rejected(body)
    assert error.message == "3 of 121 records are invalid; nothing was accepted"
    assert rejected(ndjson(GOOD, {"event": "x"})).message == "1 of 2 records is invalid; nothing was accepted"


def test_checking_stops_after_max_problems() -> None:
    body = ndjson(*([{"event": "x"}] * 50))
    error = rejected(body, max_problems=5)
    assert [p.line for p in error.problems] == [1, 2, 3, 4, 5]
    assert (
        error.message
        == "at least 5 records are invalid (checking stopped at line 5 after 5 problems); nothing was accepted"
    )
    assert len(rejected(body).problems) == 20


BODY_REFUSALS: list[tuple[str, bytes, str, str]] = [
    ("empty NDJSON body", b"", "ndjson", "no records"),
    ("only blank lines", b"\n \r\n\n", "ndjson", "no records"),
    ("empty JSON body", b"  ", "json", "no records: the body is empty"),
    ("empty JSON array", b"[ ]", "json", "no records: the JSON array is empty"),
    (
        "JSON object, not array",
        b'{"event": "e", "time": 1}',
        "json",
        "the JSON body must be an array of records, not an object",
    ),
    (
        "CleverTap upload envelope",
        b'{"d": [{"evtName": "e"}]}',
        "json",
        'the JSON body must be an array of records, not an object (its "d" member holds an array: '
        "send that array itself)",
    ),
    ("JSON string", b'"events"', "json", "the JSON body must be an array of records, not a string"),
    (
        "malformed array",
        b'[{"event": "e", "time": 1},\n {"event": "f", "time": 1,}]',
        "json",
        "malformed JSON on line 2, column 26: trailing comma is not allowed",
    ),
    (
        "NaN in array",
        b'[{"event": "e", "time": 1, "v": NaN}]',
        "json",
        "malformed JSON on line 1, column 33: NaN and Infinity are not JSON numbers",
    ),
    (
        "invalid UTF-8 in array",
        b'[\n{"event": "e", "time": 1, "v": "\xff"}]',
        "json",
        "malformed JSON on line 2, column 33: the text is not valid UTF-8 (byte 0xff: invalid start byte)",
    ),
    (
        "text after the array",
        b'[{"event": "e", "time": 1}] []',
        "json",
        "malformed JSON on line 1, column 29: there is more text after the end of the array",
    ),
    (
        "NDJSON sent as JSON",
        ndjson(GOOD, GOOD),
        "json",
        "the body holds one JSON object per line (NDJSON), but its Content-Type is application/json",
    ),
]


@pytest.mark.parametrize(("label", "body", "kind", "message"), BODY_REFUSALS, ids=[case[0] for case in BODY_REFUSALS])
def test_unusable_bodies_are_refused(label: str, body: bytes, kind: str, message: str) -> None:
    error = rejected(body, kind)
    assert error.message.startswith(message), error.message
    assert len(error.problems) == 1
    assert error.problems[0].message == error.message


# --- exactness, encodings, odd shapes -----------------------------------------------------------

BIG = 2**80
BIG_TEXT = str(BIG).encode()


def test_big_integers_stay_byte_exact_in_ndjson() -> None:
    line = (
        b'{"event":"e","time":1618716477,"id":'
        + BIG_TEXT
        + b',"neg":-'
        + BIG_TEXT
        + b',"pi":3.14159265358979323846264}'
    )
    batch = parse_batch(line + b"\r\n", "ndjson", "events")
    _, lines, _ = only_partition(batch)
    assert lines == [line]
    assert json.loads(lines[0])["id"] == BIG


@pytest.mark.parametrize("indent", [None, 2])
def test_big_numbers_stay_exact_in_a_json_array(indent: int | None) -> None:
    records = [
        {"event": "e", "time": 1618716477, "id": BIG, "list": [1, -BIG, {"deep": BIG}]},
        {"event": "f", "time": 1618716477, "plain": 1.5, "text": "line\nbreak \u00e9 \U0001f600"},
    ]
    body = json.dumps(records, indent=indent, ensure_ascii=False).encode()
    batch = parse_batch(body, "json", "events")
    _, lines, _ = only_partition(batch)
    assert [json.loads(line) for line in lines] == records
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert BIG_TEXT in lines[0]


def test_a_float_with_more_digits_than_a_double_keeps_its_text_in_a_json_array() -> None:
    body = b'[{"event":"e","time":1618716477,"pi":3.14159265358979323846264},{"event":"f","time":1618716477}]'
    _, lines, _ = only_partition(parse_batch(body, "json", "events"))
    assert lines[0] == b'{"event":"e","time":1618716477,"pi":3.14159265358979323846264}'
    assert lines[1] == b'{"event":"f","time":1618716477}'


def test_json_array_elements_are_staged_as_compact_lines() -> None:
    records = [{"event": "a", "time": 1618716477, "p": {"x": [1, 2.5, None]}}, {"event": "b", "time": 1618716477}]
    _, lines, _ = only_partition(parse_batch(json.dumps(records, indent=4).encode(), "json", "events"))
    assert lines == [b'{"event":"a","time":1618716477,"p":{"x":[1,2.5,null]}}', b'{"event":"b","time":1618716477}']


def test_body_level_problems_point_at_the_body_or_the_text_line() -> None:
    assert [(p.line, p.where) for p in rejected(b"[]", "json").problems] == [(0, "body")]
    assert [(p.line, p.where) for p in rejected(b'{"a": 1}', "json").problems] == [(0, "body")]
    assert [(p.line, p.where) for p in rejected(b"", "ndjson").problems] == [(0, "body")]
    before = '{"event": "ümlaut", "v": "'
    problem = rejected(b"[\n" + before.encode() + b'\xff"}]', "json").problems[0]
    assert (problem.line, problem.where) == (2, "line 2")
    assert f"column {len(before) + 1}:" in problem.message  # counted in characters: "ü" is one


def test_json_array_checking_stops_after_max_problems() -> None:
    error = rejected(json.dumps([{"event": "x"}] * 30).encode(), "json", max_problems=3)
    assert [p.where for p in error.problems] == ["record 1", "record 2", "record 3"]
    assert error.message.startswith("at least 3 records are invalid (checking stopped at record 3")


def test_garbage_collection_is_left_as_it_was() -> None:
    import gc

    assert gc.isenabled()
    parse_batch(json.dumps([GOOD]).encode(), "json", "events")
    rejected(b"[1", "json")
    assert gc.isenabled()


def test_unicode_is_kept_as_sent() -> None:
    line = '{"event":"購入 ✅","time":1618716477,"city":"Zürich","emoji":"\\ud83d\\ude00","rtl":"שלום"}'.encode()
    _, lines, columns = only_partition(parse_batch(b"\xef\xbb\xbf" + line + b"\n", "ndjson", "events"))
    assert lines == [line]
    assert columns == {"event", "time", "city", "emoji", "rtl"}
    array = json.dumps([{"event": "購入 ✅", "time": 1618716477, "ключ": "значение"}], ensure_ascii=False).encode()
    _, lines, columns = only_partition(parse_batch(b"\xef\xbb\xbf" + array, "json", "events"))
    assert json.loads(lines[0])["ключ"] == "значение"
    assert "ключ" in columns


def nested_text(depth: int) -> bytes:
    """The JSON text of a record ``depth`` objects deep (``{"k<depth-2>": ... {"k0": {"leaf": 1}}}``), built
    without a recursive encoder."""
    keys = [f"k{level}" for level in reversed(range(depth - 1))]
    return "".join(f'{{"{key}":' for key in keys).encode() + b'{"leaf":1}' + b"}" * len(keys)


@pytest.mark.parametrize("depth", [200, 300, 1000])
@pytest.mark.parametrize("kind", ["ndjson", "json"])
def test_deep_nesting_is_accepted(depth: int, kind: str) -> None:
    text = b'{"event":"deep","time":1618716477,"payload":' + nested_text(depth) + b"}"
    body = text + b"\n" if kind == "ndjson" else b"[" + text + b"]"
    _, lines, columns = only_partition(parse_batch(body, kind, "events"))  # type: ignore[arg-type]
    assert lines == [text]
    (deep_column,) = columns - {"event", "time"}
    assert deep_column.count(".") == depth
    assert deep_column.startswith("payload.k") and deep_column.endswith(".leaf")


def test_empty_objects_and_lists_are_single_columns() -> None:
    records = [
        {"event": "a", "time": 1618716477, "props": {}, "tags": [], "nested": {"empty": {}, "x": None}},
        {"event": "b", "time": 1618716477, "props": {"k": 1}, "tags": [{"t": 1}], "nested": {"empty": {}, "x": True}},
    ]
    _, _, columns = only_partition(parse_batch(ndjson(*records), "ndjson", "events"))
    assert columns == {"event", "time", "props", "props.k", "tags", "nested.empty", "nested.x"}


def test_columns_follow_records_whose_shape_changes() -> None:
    records = [
        {"event": "a", "time": 1618716477, "p": {"x": 1, "y": 2}},
        {"event": "a", "time": 1618716477, "p": {"x": 1, "y": 2}},
        {"event": "a", "time": 1618716477, "p": {"x": {"deeper": 1}, "y": 2}},  # a leaf becomes an object
        {"event": "a", "time": 1618716477, "p": {"x": 1, "y": [{"in": "list"}]}},  # an object inside a list
        {"event": "a", "time": 1618716477, "p": {"x": "{not an object}", "y": 2}},  # a brace inside a string
        {"event": "a", "time": 1618716477, "p": {}},  # an object becomes empty
        {"event": "a", "time": 1618716477, "p": {"x": 1, "y": 2}, "q": {"z": {}}},
    ]
    for kind in ("ndjson", "json"):
        body = ndjson(*records) if kind == "ndjson" else json.dumps(records).encode()
        _, _, columns = only_partition(parse_batch(body, kind, "events"))  # type: ignore[arg-type]
        assert columns == {"event", "time", "p", "p.x", "p.x.deeper", "p.y", "q.z"}


def test_crlf_lines_and_lone_carriage_returns_are_staged_on_one_line() -> None:
    body = b'{"event":"a","time":1}\r\n{"event":"b",\r"time":1}\r\n'
    _, lines, _ = only_partition(parse_batch(body, "ndjson", "events"))
    assert lines == [b'{"event":"a","time":1}', b'{"event":"b", "time":1}']


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="content_type"):
        parse_batch(b"{}", "csv", "events")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record_type"):
        parse_batch(b"{}", "ndjson", "people")  # type: ignore[arg-type]


# --- property: any object with a name and a time is accepted exactly, or refused cleanly ----------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
TROUBLE = st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "\udc00x", 1e-320, 3.14159265358979323846, 2**80])
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)
VALID_TIMES = st.one_of(
    st.integers(min_value=0, max_value=4_102_444_799),  # seconds (or YYYYMMDD / small values)
    st.integers(min_value=10**11, max_value=4_102_444_799_999),  # milliseconds
    st.integers(min_value=10**14, max_value=4_102_444_799_999_999),  # microseconds
    st.floats(min_value=0, max_value=4_102_444_799),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)).map(datetime.isoformat),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda moment: f"{moment:%Y%m%d%H%M%S}"
    ),
    st.sampled_from(["$D_1497367620", "2015-08-10 21:56:14.123000", "2024-05-22T17:09:29.220Z", "2024-05-22"]),
)
OTHER_TIMES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(["yesterday", "", "2026-13-01", True, None]),
    JSON_VALUES,
)
NAMES = st.text(min_size=1, max_size=10).filter(lambda name: not name.isspace())
TIME_KEYS = st.sampled_from(["timestamp", "event_time", "time", "ts", "originalTimestamp", "properties.time"])
NAME_KEYS = st.sampled_from(["event", "eventName", "evtName", "event_type", "event_name", "name"])


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    return draw(usual if draw(st.integers(min_value=0, max_value=9)) else rare)


@st.composite
def event_records(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid events of every platform shape; now and then a bad name, time or value."""
    record: dict[str, Any] = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5))
    record[draw(NAME_KEYS)] = mostly(draw, NAMES, JSON_VALUES)
    key, value = draw(TIME_KEYS), mostly(draw, VALID_TIMES, OTHER_TIMES)
    if key == "properties.time":
        record["properties"] = {**draw(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=2)), "time": value}
    else:
        record[key] = value
    if not draw(st.integers(min_value=0, max_value=9)):
        record[draw(st.text(max_size=3))] = draw(TROUBLE)
    return record


def encode(records: list[dict[str, Any]], kind: str, ascii_only: bool) -> bytes:
    if kind == "ndjson":
        text = "\n".join(json.dumps(record, ensure_ascii=ascii_only) for record in records)
    else:
        text = json.dumps(records, ensure_ascii=ascii_only, indent=1 if ascii_only else None)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(event_records(), min_size=1, max_size=4),
    kind=st.sampled_from(["ndjson", "json"]),
    ascii_only=st.booleans(),
)
def test_any_named_timed_object_is_accepted_exactly_or_refused(
    records: list[dict[str, Any]], kind: str, ascii_only: bool
) -> None:
    body = encode(records, kind, ascii_only)
    try:
        batch = parse_batch(body, kind, "events")  # type: ignore[arg-type]
    except RecordsRejected as error:
        assert error.problems
        assert all(problem.message for problem in error.problems)
        return
    staged = [line for part in batch.partitions.values() for line in part.lines]
    assert batch.record_count == len(staged) == len(records)
    assert all(b"\n" not in line and b"\r" not in line for line in staged)
    expected = sorted(json.dumps(record, sort_keys=True) for record in records)
    assert sorted(json.dumps(json.loads(line), sort_keys=True) for line in staged) == expected
    for part in batch.partitions.values():
        assert part.columns == {column for line in part.lines for column in flattened_keys(json.loads(line))}
