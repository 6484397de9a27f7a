"""Event time, name and identity extraction: tables of platform shapes and time encodings."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.intake.event_time import (
    EventTimeError,
    find_event_name,
    find_event_time,
    find_profile_identity,
    parse_event_time,
    partition_key_for_event_time,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- parse_event_time: accepted encodings -------------------------------------------------------

ACCEPTED: list[tuple[str, object, datetime]] = [
    ("epoch seconds (CleverTap upload ts, Mixpanel)", 1618716477, utc(2021, 4, 18, 3, 27, 57)),
    ("epoch milliseconds (Mixpanel import, Amplitude time)", 1618716477000, utc(2021, 4, 18, 3, 27, 57)),
    ("epoch ms with a remainder", 1618716477123, utc(2021, 4, 18, 3, 27, 57, 123000)),
    ("epoch microseconds (GA4 event_timestamp)", 1618716477123456, utc(2021, 4, 18, 3, 27, 57, 123456)),
    ("epoch nanoseconds", 1618716477123456789, utc(2021, 4, 18, 3, 27, 57, 123456)),
    ("float seconds", 1618716477.25, utc(2021, 4, 18, 3, 27, 57, 250000)),
    ("float milliseconds", 1618716477123.0, utc(2021, 4, 18, 3, 27, 57, 123000)),
    ("float ms with a fraction", 1618716477123.5, utc(2021, 4, 18, 3, 27, 57, 123500)),
    ("digit string seconds", "1618716477", utc(2021, 4, 18, 3, 27, 57)),
    ("digit string milliseconds", "1618716477000", utc(2021, 4, 18, 3, 27, 57)),
    ("decimal string seconds", "1618716477.5", utc(2021, 4, 18, 3, 27, 57, 500000)),
    ("CleverTap export YYYYMMDDHHMMSS", 20191012093020, utc(2019, 10, 12, 9, 30, 20)),
    ("CleverTap export sample from its docs", 20171109000015, utc(2017, 11, 9, 0, 0, 15)),
    ("YYYYMMDDHHMMSS as a string", "20191012093020", utc(2019, 10, 12, 9, 30, 20)),
    ("YYYYMMDDHHMMSS as a float", 20191012093020.0, utc(2019, 10, 12, 9, 30, 20)),
    ("YYYYMMDD", 20191012, utc(2019, 10, 12)),
    ("YYYYMMDD as a string", "20191012", utc(2019, 10, 12)),
    ("CleverTap $D_ date", "$D_1497367620", utc(2017, 6, 13, 15, 27)),
    ("CleverTap $D_ in milliseconds", "$D_1497367620000", utc(2017, 6, 13, 15, 27)),
    (
        "Amplitude export: space, 6 fraction digits, no zone",
        "2015-08-10 21:56:14.123000",
        utc(2015, 8, 10, 21, 56, 14, 123000),
    ),
    ("Segment / PostHog ISO with Z", "2024-05-22T17:09:29.220Z", utc(2024, 5, 22, 17, 9, 29, 220000)),
    ("ISO with 1 fraction digit", "2024-05-22T17:09:29.2Z", utc(2024, 5, 22, 17, 9, 29, 200000)),
    ("ISO with 9 fraction digits", "2024-05-22T17:09:29.123456789Z", utc(2024, 5, 22, 17, 9, 29, 123456)),
    ("ISO with +05:30", "2024-05-22T17:09:29+05:30", utc(2024, 5, 22, 11, 39, 29)),
    ("ISO with -0800", "2024-05-22T17:09:29-0800", utc(2024, 5, 23, 1, 9, 29)),
    ("ISO with +00:00 (Segment sample)", "2017-09-09T16:32:30+00:00", utc(2017, 9, 9, 16, 32, 30)),
    ("ISO without zone is UTC", "2024-05-22T17:09:29", utc(2024, 5, 22, 17, 9, 29)),
    ("ISO lower-case t and z", "2024-05-22t17:09:29z", utc(2024, 5, 22, 17, 9, 29)),
    ("ISO basic format", "20240522T170929Z", utc(2024, 5, 22, 17, 9, 29)),
    ("date only", "2024-05-22", utc(2024, 5, 22)),
    ("surrounding spaces", "  2024-05-22T17:09:29Z ", utc(2024, 5, 22, 17, 9, 29)),
    ("the epoch itself", 0, utc(1970, 1, 1)),
    ("small epoch seconds", 86_400, utc(1970, 1, 2)),
    ("last microsecond of 2100", "2100-12-31T23:59:59.999999Z", utc(2100, 12, 31, 23, 59, 59, 999999)),
    ("a datetime", datetime(2024, 5, 22, 17, 9, tzinfo=timezone(timedelta(hours=2))), utc(2024, 5, 22, 15, 9)),
]


@pytest.mark.parametrize(("label", "value", "expected"), ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_accepted_time_encodings(label: str, value: object, expected: datetime) -> None:
    parsed = parse_event_time(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC


# --- parse_event_time: refused values, with the reason in words --------------------------------

REFUSED: list[tuple[object, str]] = [
    (True, "is a boolean"),
    (False, "is a boolean"),
    (None, "is null"),
    ({"t": 1}, "is an object"),
    ([1618716477], "is an array"),
    (math.nan, "is not a finite number"),
    (math.inf, "is not a finite number"),
    (-math.inf, "is not a finite number"),
    (-1, "is negative"),
    (-1618716477.5, "is negative"),
    ("yesterday", "is not a valid date-time"),
    ("", "is an empty string"),
    ("   ", "is an empty string"),
    ("2026-13-01", "is not a valid date-time"),
    ("2024-02-30T10:00:00Z", "is not a valid date-time"),
    ("2024-05-22 17:09:29 UTC", "is not a valid date-time"),
    ("1618716477,5", "is not a valid date-time"),
    ("-1618716477", "is not a valid date-time"),
    ("$D_yesterday", "is not a valid CleverTap date"),
    (20191312093020, "read as YYYYMMDDHHMMSS: month must be in 1..12"),
    (20191012256000, "read as YYYYMMDDHHMMSS"),
    (20261301, "read as YYYYMMDD: month must be in 1..12"),
    (19691231235959, "outside the supported years 1970..2100"),
    (21010101000000, "outside the supported years 1970..2100"),
    (4133980800, "outside the supported years 1970..2100 (as epoch seconds it is 2101-01-01T00:00:00Z)"),
    (4133980800000, "(as epoch milliseconds it is 2101-01-01T00:00:00Z)"),
    (99_999_999_999_999_999, "(as epoch microseconds it is 5138-11-16T09:46:39Z)"),
    ("2101-01-01", "outside the supported years 1970..2100"),
    ("1969-12-31T23:59:59Z", "outside the supported years 1970..2100"),
    ("1970-01-01T00:30:00+01:00", "outside the supported years 1970..2100 (it is 1969-12-31T23:30:00Z)"),
    (10**20, "is too large"),
    (1.2089258196146292e24, "is too large"),  # what orjson makes of a 2**80 literal
    ("9" * 30, "is too large"),
]


@pytest.mark.parametrize(("value", "reason"), REFUSED, ids=[repr(case[0])[:40] for case in REFUSED])
def test_refused_time_values_say_why(value: object, reason: str) -> None:
    with pytest.raises(EventTimeError) as caught:
        parse_event_time(value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(repr(value)[:20])


def test_time_error_message_reads_like_a_sentence() -> None:
    with pytest.raises(EventTimeError) as caught:
        parse_event_time("2026-13-01")
    assert str(caught.value) == "'2026-13-01' is not a valid date-time"
    assert isinstance(caught.value, ValueError)
    assert caught.value.value == "2026-13-01"


# --- where the time is, per platform ------------------------------------------------------------

MIXPANEL_EVENT = {
    "event": "Signup",
    "properties": {
        "time": 1618716477000,
        "distinct_id": "91304156-cafc-4673-a237-623d1129c801",
        "$insert_id": "29fc2962-6d9c-455d-95ad-95b84f09b9e4",
        "Referred by": "Friend",
    },
}
SEGMENT_TRACK = {
    "type": "track",
    "event": "Order Completed",
    "userId": "97980cfea0067",
    "anonymousId": "507f191e810c19729de860ea",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "originalTimestamp": "2015-02-23T22:28:55.387Z",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "properties": {"revenue": 39.95, "time": 1},
}
AMPLITUDE_UPLOAD = {
    "user_id": "203201202",
    "device_id": "C8F9E604",
    "event_type": "watch_tutorial",
    "time": 1396381378123,
}
AMPLITUDE_EXPORT = {
    "event_type": "Played Song",
    "event_time": "2015-08-10 21:56:14.123000",
    "client_event_time": "2015-08-10 21:56:13.000000",
    "server_upload_time": "2015-08-10 21:56:15.000000",
    "user_id": "user@example.com",
    "amplitude_id": 1234567890,
}
CLEVERTAP_UPLOAD = {
    "type": "event",
    "identity": "jack@gmail.com",
    "ts": 1497367620,
    "evtName": "Charged",
    "evtData": {"Amount": 300},
}
CLEVERTAP_EXPORT = {
    "profile": {"identity": "dqsndckfk234"},
    "ts": 20171109000015,
    "eventName": "App Launched",
    "eventProps": {},
}
POSTHOG_CAPTURE = {
    "event": "$pageview",
    "distinct_id": "018daf23",
    "timestamp": "2024-05-22T17:09:29.220Z",
    "properties": {"$current_url": "/"},
}
GA4_EXPORT = {"event_name": "first_open", "event_timestamp": 1575779411418000, "user_pseudo_id": "3c8a1e6"}

TIME_FOUND: list[tuple[str, dict[str, Any], tuple[str, object] | None]] = [
    ("Mixpanel import", MIXPANEL_EVENT, ("properties.time", 1618716477000)),
    ("Segment track: timestamp wins", SEGMENT_TRACK, ("timestamp", "2015-02-23T22:28:55.111Z")),
    (
        "Segment without timestamp",
        {"event": "x", "originalTimestamp": "2015-02-23T22:28:55Z"},
        ("originalTimestamp", "2015-02-23T22:28:55Z"),
    ),
    ("Amplitude upload", AMPLITUDE_UPLOAD, ("time", 1396381378123)),
    ("Amplitude export: event_time wins", AMPLITUDE_EXPORT, ("event_time", "2015-08-10 21:56:14.123000")),
    ("CleverTap upload", CLEVERTAP_UPLOAD, ("ts", 1497367620)),
    ("CleverTap export", CLEVERTAP_EXPORT, ("ts", 20171109000015)),
    ("PostHog capture", POSTHOG_CAPTURE, ("timestamp", "2024-05-22T17:09:29.220Z")),
    ("GA4 export", GA4_EXPORT, ("event_timestamp", 1575779411418000)),
    ("null counts as absent", {"timestamp": None, "properties": {"time": 5}}, ("properties.time", 5)),
    ("properties.timestamp", {"properties": {"timestamp": "2024-01-01"}}, ("properties.timestamp", "2024-01-01")),
    ("bad value is still found", {"ts": "yesterday"}, ("ts", "yesterday")),
    ("properties not an object", {"properties": [1, 2]}, None),
    ("no time at all", {"event": "x", "receivedAt": "2024-01-01T00:00:00Z"}, None),
]


@pytest.mark.parametrize(("label", "record", "expected"), TIME_FOUND, ids=[case[0] for case in TIME_FOUND])
def test_find_event_time(label: str, record: dict[str, Any], expected: tuple[str, object] | None) -> None:
    assert find_event_time(record) == expected


def test_every_platform_sample_time_parses() -> None:
    for record in (
        MIXPANEL_EVENT,
        SEGMENT_TRACK,
        AMPLITUDE_UPLOAD,
        AMPLITUDE_EXPORT,
        CLEVERTAP_UPLOAD,
        CLEVERTAP_EXPORT,
        POSTHOG_CAPTURE,
        GA4_EXPORT,
    ):
        found = find_event_time(record)
        assert found is not None
        assert MIN <= parse_event_time(found[1]) <= MAX


MIN = utc(1970, 1, 1)
MAX = utc(2100, 12, 31, 23, 59, 59, 999999)


NAMES: list[tuple[str, dict[str, Any], str | None]] = [
    ("Mixpanel / Segment / PostHog", MIXPANEL_EVENT, "Signup"),
    ("Amplitude", AMPLITUDE_UPLOAD, "watch_tutorial"),
    ("CleverTap upload", CLEVERTAP_UPLOAD, "Charged"),
    ("CleverTap export", CLEVERTAP_EXPORT, "App Launched"),
    ("GA4", GA4_EXPORT, "first_open"),
    ("Segment page call", {"type": "page", "name": "Home", "properties": {}}, "Home"),
    ("unicode name", {"event": "購入完了 ✅"}, "購入完了 ✅"),
    ("empty event falls through", {"event": "", "event_type": "fallback"}, "fallback"),
    ("blank event falls through", {"event": "  ", "name": "n"}, "n"),
    ("non-string is no name", {"event": 42}, None),
    ("object is no name", {"event": {"name": "x"}}, None),
    ("nothing", {"type": "identify"}, None),
]


@pytest.mark.parametrize(("label", "record", "expected"), NAMES, ids=[case[0] for case in NAMES])
def test_find_event_name(label: str, record: dict[str, Any], expected: str | None) -> None:
    assert find_event_name(record) == expected


IDENTITIES: list[tuple[str, dict[str, Any], str | None]] = [
    (
        "CleverTap upload profile",
        {"type": "profile", "identity": "6264372124", "profileData": {"Age": 30}},
        "6264372124",
    ),
    (
        "CleverTap by objectId",
        {"type": "profile", "objectId": "-2ce3cca260664f70b82b1c6bb505f462"},
        "-2ce3cca260664f70b82b1c6bb505f462",
    ),
    ("Mixpanel engage set", {"$token": "t", "$distinct_id": "13793", "$set": {"$email": "a@b.c"}}, "13793"),
    ("Mixpanel engage query (numeric id)", {"$distinct_id": 4, "$properties": {"$email": "a@b.c"}}, "4"),
    ("PostHog person", {"distinct_id": "018daf23", "properties": {"email": "a@b.c"}}, "018daf23"),
    ("Segment identify", {"type": "identify", "userId": "97980cfea0067", "anonymousId": "507f"}, "97980cfea0067"),
    ("Segment anonymous identify", {"type": "identify", "userId": None, "anonymousId": "507f191e"}, "507f191e"),
    ("Amplitude user", {"user_id": "user@example.com", "device_id": "C8F9E604"}, "user@example.com"),
    ("Amplitude device only", {"device_id": "C8F9E604", "user_properties": {}}, "C8F9E604"),
    ("plain id", {"id": 12345}, "12345"),
    ("inside properties", {"properties": {"distinct_id": "u-1"}}, "u-1"),
    ("inside $properties", {"$properties": {"$distinct_id": "u-2"}}, "u-2"),
    ("empty identity falls through", {"identity": "", "objectId": "obj"}, "obj"),
    ("a boolean is no identity", {"identity": True}, None),
    ("a float is no identity", {"user_id": 1.5}, None),
    ("nothing", {"email": "a@b.c"}, None),
]


@pytest.mark.parametrize(("label", "record", "expected"), IDENTITIES, ids=[case[0] for case in IDENTITIES])
def test_find_profile_identity(label: str, record: dict[str, Any], expected: str | None) -> None:
    assert find_profile_identity(record) == expected


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        (utc(2024, 5, 22, 17, 9, 29), "date=2024-05-22/hour=17"),
        (utc(2024, 5, 22, 0, 0), "date=2024-05-22/hour=00"),
        (datetime(2024, 5, 23, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), "date=2024-05-22/hour=20"),
        (datetime(2024, 5, 22, 23, 59, 59), "date=2024-05-22/hour=23"),  # naive is UTC
    ],
)
def test_partition_key_is_the_utc_hour(moment: datetime, key: str) -> None:
    assert partition_key_for_event_time(moment) == key
