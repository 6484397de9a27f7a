"""Where an analytics record keeps its event name, event time, user identity and insert id, and what that time
is: the one set of rules that intake (to validate and partition a batch, through ``shared.intake.event_time``)
and the export (the core columns of a Parquet file) both follow.

Pure functions: no I/O, no clock.

Platform shapes this module understands (checked against each platform's documentation):

- CleverTap, Upload Events API (developer.clevertap.com/docs/upload-events-api): each item of the
  ``d`` array is ``{"type": "event", "identity" | "objectId" | ..., "ts": <epoch seconds>,
  "evtName": ..., "evtData": {...}}``; profile items carry ``identity`` / ``objectId`` and
  ``profileData``. Date-valued properties are strings ``"$D_<epoch seconds>"``
  (community.clevertap.com "How to pass Date Time Values in CleverTap").
  CleverTap's cloud exports (docs.clevertap.com/docs/export-format, the Microsoft Azure export page)
  write ``{"profile": {"identity", "objectId", ...}, "ts": 20171109000015, "eventName": ...,
  "eventProps": {...}}``: ``ts`` there is a YYYYMMDDHHMMSS integer, not an epoch.
- Mixpanel, Import Events API (docs.mixpanel.com/reference/import-events) and raw export
  (docs.mixpanel.com/docs/export-methods): ``{"event": ..., "properties": {"time": <epoch seconds
  or milliseconds>, "distinct_id": ..., "$insert_id": ...}}``. Engage (profiles):
  ``{"$distinct_id": ..., "$set": {...}}``; the Engage query returns
  ``{"$distinct_id": 4, "$properties": {...}}`` (the id may be a number).
- Segment spec, common fields (twilio.com/docs/segment/connections/spec/common): ``type``,
  ``event`` (track) or ``name`` (page/screen), ``userId`` / ``anonymousId``, ISO 8601 strings
  ``timestamp`` (the event time, corrected for clock skew), ``originalTimestamp``, ``sentAt``,
  ``receivedAt``.
- Amplitude: HTTP V2 / batch upload (amplitude.com/docs/apis/analytics/http-v2) ``event_type``,
  ``user_id`` / ``device_id``, ``time`` in epoch milliseconds; the Export API
  (amplitude.com/docs/apis/analytics/export) writes one JSON object per line with ``event_time``,
  ``client_event_time``, ``server_upload_time`` as UTC strings without a zone, e.g.
  ``"2015-08-10 21:56:14.123000"``.
- PostHog capture / batch API (posthog.com/docs/api/capture): ``{"event": ..., "distinct_id": ...,
  "properties": {...}, "timestamp": <ISO 8601, optional>}``.
- Firebase / GA4 BigQuery export rows: ``event_name``, ``event_timestamp`` in epoch microseconds
  (e.g. 1575779411418000), ``user_pseudo_id``.

Epoch numbers carry no unit, so the unit is read from the magnitude (see ``parse_event_time``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from shared.formats.exact_json import json_kind

EVENT_NAME_KEYS: tuple[str, ...] = ("event", "eventName", "evtName", "event_type", "event_name", "name")

# Event time: the platform's own "when it happened" field first, receive/upload times never.
EVENT_TIME_KEYS: tuple[str, ...] = (
    "timestamp",  # Segment (skew-corrected), PostHog
    "event_time",  # Amplitude export
    "time",  # Amplitude upload (ms)
    "ts",  # CleverTap upload (epoch s) and export (YYYYMMDDHHMMSS)
    "originalTimestamp",  # Segment, device clock
    "client_event_time",  # Amplitude export, device clock
    "event_timestamp",  # Firebase / GA4 BigQuery export (µs)
)
PROPERTIES_TIME_KEYS: tuple[str, ...] = ("time", "timestamp")  # Mixpanel: properties.time
_EVENT_TIME_KEY_SET = frozenset(EVENT_TIME_KEYS)

PROFILE_IDENTITY_KEYS: tuple[str, ...] = (
    "identity",  # CleverTap
    "objectId",  # CleverTap ID
    "$distinct_id",  # Mixpanel engage
    "distinct_id",  # PostHog, Mixpanel
    "userId",  # Segment
    "anonymousId",  # Segment
    "user_id",  # Amplitude
    "device_id",  # Amplitude
    "id",
)
PROPERTIES_IDENTITY_KEYS: tuple[tuple[str, str], ...] = (
    ("$properties", "$distinct_id"),
    ("$properties", "distinct_id"),
    ("properties", "distinct_id"),
    ("properties", "$distinct_id"),
)

# A record's own id, which platforms use to drop duplicates (the `_insert_id` core column of a Parquet file).
INSERT_ID_KEYS: tuple[str, ...] = (
    "insert_id",  # Amplitude
    "$insert_id",  # Mixpanel, at the top level
    "messageId",  # Segment
    "uuid",  # PostHog
)
PROPERTIES_INSERT_ID_KEYS: tuple[tuple[str, str], ...] = (("properties", "$insert_id"),)  # Mixpanel

MIN_YEAR = 1970
MAX_YEAR = 2100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_END_US = (datetime(MAX_YEAR + 1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US  # first instant after 2100
US_PER_HOUR = 3_600_000_000  # an event's partition is its hour: epoch microseconds // US_PER_HOUR
_DIGITS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_TOO_LARGE = "is too large for an epoch time in seconds, ms, µs or ns"


class EventTimeError(ValueError):
    """A value that is not a usable event time; ``reason`` says why in words for people."""

    def __init__(self, value: object, reason: str):
        self.value = value
        self.reason = reason
        super().__init__(f"{_show(value)} {reason}")


def parse_event_time(value: object) -> datetime:
    """The instant ``value`` denotes, as an aware UTC datetime between 1970 and 2100.

    Accepted:

    - epoch numbers (int, float, or a string of digits), unit by magnitude: below 1e11 seconds,
      below 1e14 milliseconds, below 1e17 microseconds, below 1e20 nanoseconds;
    - 14-digit numbers are CleverTap export times YYYYMMDDHHMMSS and 8-digit numbers are dates
      YYYYMMDD (as epoch seconds they would fall in 1970-1973, as milliseconds after 2100);
    - ``"$D_<epoch>"`` (CleverTap date values);
    - ISO 8601 strings: ``Z``, numeric offsets or no zone (read as UTC), ``T`` or space between
      date and time, any number of fractional digits, or a date alone.

    Refused with ``EventTimeError``: booleans, NaN and infinities, negative numbers, anything outside
    the years 1970..2100, and strings that are none of the above.
    """
    return _EPOCH + timedelta(microseconds=epoch_microseconds(value))


def epoch_microseconds(value: object) -> int:
    """``parse_event_time`` as whole microseconds since 1970-01-01T00:00Z (the fast path for batches)."""
    cls = type(value)
    if cls is int:
        return _from_int(value, value)  # type: ignore[arg-type]
    if cls is str:
        return _from_str(value)  # type: ignore[arg-type]
    if cls is float:
        return _from_float(value, value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        raise EventTimeError(value, "is a boolean, not a date-time")
    if isinstance(value, int):
        return _from_int(int(value), value)
    if isinstance(value, float):
        return _from_float(float(value), value)
    if isinstance(value, str):
        return _from_str(str(value))
    if isinstance(value, datetime):
        return _from_datetime(value, value)
    raise EventTimeError(value, f"is {json_kind(value)}, not a date-time")


def find_event_time(record: Mapping[str, Any]) -> tuple[str, object] | None:
    """The field holding the event time, as (dotted key, raw value), or None if there is none.

    Top-level keys in ``EVENT_TIME_KEYS`` order, then ``properties.time`` / ``properties.timestamp``
    (Mixpanel). A key whose value is null counts as absent.
    """
    if len(record) > 4 or not _EVENT_TIME_KEY_SET.isdisjoint(record):  # small records: one test in C
        for key in EVENT_TIME_KEYS:
            value = record.get(key)
            if value is not None:
                return key, value
    properties = record.get("properties")
    if type(properties) is dict or isinstance(properties, Mapping):  # the ABC check is slow
        for key in PROPERTIES_TIME_KEYS:
            value = properties.get(key)
            if value is not None:
                return f"properties.{key}", value
    return None


def event_microseconds(record: Mapping[str, Any]) -> int:
    """The record's event time (``find_event_time``) in epoch microseconds; ``EventTimeError`` when it has none or
    its time is not usable (intake refuses such events, so only a record staged some other way can fail here)."""
    found = find_event_time(record)
    if found is None:
        raise EventTimeError(None, "is missing: the event has no time")
    try:
        return epoch_microseconds(found[1])
    except EventTimeError as exc:
        raise EventTimeError(exc.value, f"({found[0]}) {exc.reason}") from None


def find_event_name(record: Mapping[str, Any]) -> str | None:
    """The first non-blank string among the top-level ``EVENT_NAME_KEYS``, or None."""
    for key in EVENT_NAME_KEYS:
        value = record.get(key)
        if type(value) is str and value and not value.isspace():
            return value
    return None


def find_profile_identity(record: Mapping[str, Any]) -> str | None:
    """The profile's identity: a non-blank string or an integer (as text), or None.

    Top-level ``PROFILE_IDENTITY_KEYS`` first, then ``$distinct_id`` / ``distinct_id`` inside
    ``$properties`` or ``properties``.
    """
    for key in PROFILE_IDENTITY_KEYS:
        found = _identity_text(record.get(key))
        if found is not None:
            return found
    for outer, key in PROPERTIES_IDENTITY_KEYS:
        nested = record.get(outer)
        if type(nested) is dict or isinstance(nested, Mapping):
            found = _identity_text(nested.get(key))
            if found is not None:
                return found
    return None


def find_insert_id(record: Mapping[str, Any]) -> str | None:
    """The record's insert id (a non-blank string, or an integer as text), or None: top-level
    ``INSERT_ID_KEYS`` first, then ``properties.$insert_id`` (Mixpanel)."""
    for key in INSERT_ID_KEYS:
        found = _identity_text(record.get(key))
        if found is not None:
            return found
    for outer, key in PROPERTIES_INSERT_ID_KEYS:
        nested = record.get(outer)
        if type(nested) is dict or isinstance(nested, Mapping):
            found = _identity_text(nested.get(key))
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------------------------
# The same rules over columns: a Parquet part reads whole columns of values (one per key) rather than records
# (``shared.formats.parquet_arrow``). Each chain lists the paths ``find_*`` look at, in their order; tests check
# the columns' answers against the ``find_*`` functions.

Path = tuple[str, ...]  # a top-level key, or (object, key) inside a top-level object
NAME_CHAIN: tuple[Path, ...] = tuple((key,) for key in EVENT_NAME_KEYS)
TIME_CHAIN: tuple[Path, ...] = (*((key,) for key in EVENT_TIME_KEYS),
                                *(("properties", key) for key in PROPERTIES_TIME_KEYS))
IDENTITY_CHAIN: tuple[Path, ...] = (*((key,) for key in PROFILE_IDENTITY_KEYS), *PROPERTIES_IDENTITY_KEYS)
INSERT_ID_CHAIN: tuple[Path, ...] = (*((key,) for key in INSERT_ID_KEYS), *PROPERTIES_INSERT_ID_KEYS)
# A blank string (empty, or what ``str.isspace`` calls whitespace only: names and identities are not blank), as
# one expression that Arrow's regular expressions (RE2) and Python's read alike; a test checks it against
# ``str.isspace`` at every code point.
BLANK = "^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"


def partition_key_for_event_time(ts: datetime) -> str:
    """``"date=YYYY-MM-DD/hour=HH"`` of ``ts`` in UTC (a naive datetime is taken as UTC)."""
    utc = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return f"date={utc:%Y-%m-%d}/hour={utc:%H}"


def partition_key_for_microseconds(us: int) -> str:
    """``partition_key_for_event_time`` for ``epoch_microseconds``' result."""
    return partition_key_for_event_time(_EPOCH + timedelta(microseconds=us - us % US_PER_HOUR))


# ---------------------------------------------------------------------------------------------


def _identity_text(value: object) -> str | None:
    if type(value) is str:
        return value if value and not value.isspace() else None
    if type(value) is int:
        return str(value)
    return None


def _from_int(n: int, original: object) -> int:
    # Ordered by magnitude so the common epoch cases take two comparisons.
    if n < 10**7:
        if n < 0:
            raise EventTimeError(original, "is negative; epoch times start at 1970-01-01")
        return n * 1_000_000
    if 10**13 <= n < 10**14:
        hour, minute_second = divmod(n, 10_000)
        minute, second = divmod(minute_second, 100)
        if minute < 60 and second < 60:
            try:
                return _hour_start_us(hour) + (minute * 60 + second) * 1_000_000
            except ValueError:
                pass  # explained below
        return _from_calendar_digits(str(n), original)
    if n < 10**8:
        return _from_calendar_digits(str(n), original)
    return _from_epoch(n, original)


@lru_cache(maxsize=4096)
def _hour_start_us(yyyymmddhh: int) -> int:
    """Microseconds since the epoch at the start of a YYYYMMDDHH hour in 1970..2100 (CleverTap exports
    repeat the same hours over and over: parse each once)."""
    year, rest = divmod(yyyymmddhh, 1_000_000)
    month, rest = divmod(rest, 10_000)
    day, hour = divmod(rest, 100)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError("year out of range")
    return (datetime(year, month, day, hour, tzinfo=UTC) - _EPOCH) // _ONE_US


def _from_epoch(n: int, original: object) -> int:
    if n < 10**11:
        us, unit = n * 1_000_000, "seconds"
    elif n < 10**14:
        us, unit = n * 1000, "milliseconds"
    elif n < 10**17:
        us, unit = n, "microseconds"
    elif n < 10**20:
        us, unit = n // 1000, "nanoseconds"
    else:
        raise EventTimeError(original, _TOO_LARGE)
    if 0 <= us < _END_US:
        return us
    return _checked(us, original, f"as epoch {unit}")


def _from_float(x: float, original: object) -> int:
    if not math.isfinite(x):
        raise EventTimeError(original, "is not a finite number")
    if x < 0:
        raise EventTimeError(original, "is negative; epoch times start at 1970-01-01")
    if x.is_integer() and x < 1e20:
        return _from_int(int(x), original)
    if x < 1e11:
        us, unit = round(x * 1_000_000), "seconds"
    elif x < 1e14:
        us, unit = round(x * 1000), "milliseconds"
    elif x < 1e17:
        us, unit = round(x), "microseconds"
    elif x < 1e20:
        us, unit = round(x / 1000), "nanoseconds"
    else:
        raise EventTimeError(original, _TOO_LARGE)
    return _checked(us, original, f"as epoch {unit}")


def _from_str(text: str) -> int:
    s = text.strip()
    if not s:
        raise EventTimeError(text, "is an empty string, not a date-time")
    if s.isdigit() and s.isascii():
        if len(s) > 25:
            raise EventTimeError(text, _TOO_LARGE)
        return _from_int(int(s), text)
    if s.startswith("$D_"):  # CleverTap date value: always epoch, never YYYYMMDD
        digits = s[3:]
        if len(digits) <= 25 and _DIGITS.fullmatch(digits):
            return _from_float(float(digits), text) if "." in digits else _from_epoch(int(digits), text)
        raise EventTimeError(text, "is not a valid CleverTap date ($D_ must be followed by epoch seconds)")
    if len(s) <= 25 and _DIGITS.fullmatch(s):
        return _from_float(float(s), text)
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(s.upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            raise EventTimeError(text, "is not a valid date-time") from None
    return _from_datetime(parsed, text)


def _from_datetime(parsed: datetime, original: object) -> int:
    aware = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return _checked((aware - _EPOCH) // _ONE_US, original, "")


def _from_calendar_digits(digits: str, original: object) -> int:
    layout = "YYYYMMDDHHMMSS" if len(digits) == 14 else "YYYYMMDD"
    padded = digits.ljust(14, "0")  # YYYYMMDD is midnight
    try:
        moment = datetime(
            int(padded[0:4]),
            int(padded[4:6]),
            int(padded[6:8]),
            int(padded[8:10]),
            int(padded[10:12]),
            int(padded[12:14]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise EventTimeError(
            original, f"is not a valid date-time ({len(digits)}-digit numbers are read as {layout}: {exc})"
        ) from None
    return _checked((moment - _EPOCH) // _ONE_US, original, f"as {layout}")


def _checked(us: int, original: object, reading: str) -> int:
    if 0 <= us < _END_US:
        return us
    how = f" ({reading} it is {_render(us)})" if reading else f" (it is {_render(us)})"
    raise EventTimeError(original, f"is outside the supported years {MIN_YEAR}..{MAX_YEAR}{how}")


def _render(us: int) -> str:
    try:
        moment = _EPOCH + timedelta(microseconds=us)
    except OverflowError:  # an ISO time at the very edge of datetime's range, shifted by its offset
        return "after the year 9999" if us > 0 else "before the year 1"
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"




def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
