"""The NCRONTAB parser `make serve` runs the timer with: the forms Azure Functions accepts, six fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scripts.ncrontab import ScheduleError, parse_field, parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "name", "low", "high", "expected"),
    [
        ("*", "hour", 0, 23, set(range(24))),
        ("5", "minute", 0, 59, {5}),
        ("*/15", "minute", 0, 59, {0, 15, 30, 45}),
        ("*/7", "day", 1, 31, {1, 8, 15, 22, 29}),
        ("1-5", "day-of-week", 0, 6, {1, 2, 3, 4, 5}),
        ("10-20/5", "second", 0, 59, {10, 15, 20}),
        ("50/5", "second", 0, 59, {50, 55}),  # a/n: from a to the maximum
        ("1,15,30", "second", 0, 59, {1, 15, 30}),
        ("0-2,*/20", "minute", 0, 59, {0, 1, 2, 20, 40}),
        ("mon-fri", "day-of-week", 0, 6, {1, 2, 3, 4, 5}),
        ("Sunday,Sat", "day-of-week", 0, 6, {0, 6}),
        ("jan,JUL-Sep", "month", 1, 12, {1, 7, 8, 9}),
    ],
)
def test_field_values(text: str, name: str, low: int, high: int, expected: set[int]) -> None:
    names = {"month": ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                       "october", "november", "december"),
             "day-of-week": ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")}
    assert parse_field(text, name, low, high, names.get(name, ())) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # The default: every 5 minutes, on the minute.
        ("0 */5 * * * *", "2026-11-23T14:03:07", ["2026-11-23T14:05:00", "2026-11-23T14:10:00"]),
        ("0 */5 * * * *", "2026-11-23T14:05:00", ["2026-11-23T14:10:00"]),  # strictly after
        ("0 */5 * * * *", "2026-11-23T23:58:00", ["2026-11-24T00:00:00"]),
        ("*/10 * * * * *", "2026-11-23T14:00:55", ["2026-11-23T14:01:00", "2026-11-23T14:01:10"]),
        ("* * * * * *", "2026-12-31T23:59:59", ["2027-01-01T00:00:00"]),
        ("0 0 * * * *", "2026-11-23T14:00:00.5", ["2026-11-23T15:00:00"]),
        ("0 30 9 * * *", "2026-11-23T10:00:00", ["2026-11-24T09:30:00"]),
        ("0 30 9 * * 1-5", "2026-11-27T10:00:00", ["2026-11-30T09:30:00"]),  # Fri after 9:30 -> Mon
        ("0 0 0 1 * *", "2026-11-23T00:00:00", ["2026-12-01T00:00:00", "2027-01-01T00:00:00"]),
        ("0 0 12 31 * *", "2026-11-01T00:00:00", ["2026-12-31T12:00:00", "2027-01-31T12:00:00"]),
        ("0 0 0 29 2 *", "2026-03-01T00:00:00", ["2028-02-29T00:00:00"]),
        # Day of month AND day of week (NCrontab's rule, not Vixie cron's OR): the 13th on a Friday.
        ("0 0 0 13 * Fri", "2026-01-01T00:00:00", ["2026-02-13T00:00:00", "2026-03-13T00:00:00"]),
        ("0 0 9 * Jan,Jul Mon", "2026-11-23T00:00:00", ["2027-01-04T09:00:00"]),
        ("15,45 0 0 * * *", "2026-11-23T00:00:20", ["2026-11-23T00:00:45", "2026-11-24T00:00:15"]),
    ],
)
def test_next_occurrences(expression: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expression)
    assert schedule.upcoming(at(after), len(expected)) == [at(t) for t in expected]
    assert all(schedule.matches(at(t)) for t in expected)


def test_times_are_utc_whatever_zone_they_are_given_in() -> None:
    from datetime import timedelta, timezone

    berlin = datetime(2026, 11, 23, 15, 3, tzinfo=timezone(timedelta(hours=1)))  # 14:03 UTC
    assert parse_schedule("0 0 15 * * *").next_after(berlin) == at("2026-11-23T15:00:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * * *").next_after(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/5 * * * *", "has 5 field"),  # classic five-field cron: Functions needs seconds first
        ("0 */5 * * * * *", "has 7 field"),
        ("", "has 0 field"),
        ("00:05:00", "TimeSpan"),
        ("60 * * * * *", "second field '60': 60 is outside 0-59"),
        ("0 60 * * * *", "minute field"),
        ("0 0 24 * * *", "hour field"),
        ("0 0 0 0 * *", "day field '0': 0 is outside 1-31"),
        ("0 0 0 * 13 *", "month field"),
        ("0 0 0 * * 7", "day-of-week field '7': 7 is outside 0-6"),
        ("*/0 * * * * *", "step after '/' must be a whole number above 0"),
        ("*/x * * * * *", "step"),
        ("0 10-5 * * * *", "runs backwards"),
        ("0 1,,2 * * * *", "empty list item"),
        ("0 ? * * * *", "'?' is not a number 0-59"),
        ("0 0 0 * * Funday", "'Funday' is not a number 0-6 or a name such as Sun"),
        ("0 0 0 * Ja *", "'Ja' is not"),  # names need three letters at least
        ("0 0 0 31 2 *", "never occurs"),
    ],
)
def test_bad_schedules_say_why(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_schedule(expression).next_after(at("2026-01-01T00:00:00"))
