"""NCRONTAB schedules as Azure Functions timer triggers read them (pure): six fields, seconds first.

    {second} {minute} {hour} {day} {month} {day-of-week}        e.g. "0 */5 * * * *" = every 5 minutes

Each field is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to the field's
maximum), or a comma-separated list of those. Months and days of week may be names or their first
three letters (Jan, Mon); day of week runs 0-6 with Sunday = 0. As in NCrontab (the library the
Functions host uses), a time matches when every field matches, day of month and day of week included.
Times are UTC (the host's default when WEBSITE_TIME_ZONE is not set).

Only `make serve` needs this: in Azure and under `func start`, the Functions host runs the timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")

# (name, lowest, highest, names for the values from `lowest` on)
FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 6, DAYS),
)
FORMAT = "{second} {minute} {hour} {day} {month} {day-of-week}"
# A schedule like "0 0 0 29 2 Mon" (Feb 29 on a Monday) comes round within 28 years; look a bit further.
SEARCH_YEARS = 30


class ScheduleError(ValueError):
    """The expression is not a schedule this parser (and the Functions host) accepts; the message says why."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # Sunday = 0

    def matches(self, moment: datetime) -> bool:
        t = _utc(moment)
        return (
            t.second in self.seconds and t.minute in self.minutes and t.hour in self.hours
            and self._day_matches(t)
        )

    def _day_matches(self, t: datetime) -> bool:
        return t.month in self.months and t.day in self.days and (t.weekday() + 1) % 7 in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first matching time strictly after `moment` (UTC, whole seconds)."""
        start = _utc(moment).replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        limit = day + timedelta(days=366 * SEARCH_YEARS)
        while day < limit:
            if self._day_matches(day):
                found = self._first_time_on(day, start)
                if found is not None:
                    return found
            day += timedelta(days=1)
        raise ScheduleError(f"the schedule '{self.expression}' never occurs (check the day and month fields)")

    def _first_time_on(self, day: datetime, start: datetime) -> datetime | None:
        """The first allowed time of `day` at or after `start` (skipping whole hours and minutes before it)."""
        floor = (start.hour, start.minute, start.second) if day.date() == start.date() else (0, 0, 0)
        for hour in self.hours:
            if hour < floor[0]:
                continue
            for minute in self.minutes:
                if (hour, minute) < floor[:2]:
                    continue
                for second in self.seconds:
                    if (hour, minute, second) >= floor:
                        return day.replace(hour=hour, minute=minute, second=second)
        return None

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment)
            out.append(moment)
        return out


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


def parse_schedule(expression: str) -> Schedule:
    """Parse a six-field NCRONTAB expression; raise ScheduleError naming the field and the problem."""
    text = expression.strip()
    if ":" in text and " " not in text:
        raise ScheduleError(
            f"'{expression}' is a TimeSpan schedule (hh:mm:ss), which only the Functions host on an App Service "
            f"plan runs; use a six-field NCRONTAB expression {FORMAT}, e.g. '0 */5 * * * *'"
        )
    parts = text.split()
    if len(parts) != len(FIELDS):
        hint = " (Azure Functions schedules start with a seconds field)" if len(parts) == 5 else ""
        raise ScheduleError(
            f"'{expression}' has {len(parts)} field(s); an NCRONTAB schedule has 6: {FORMAT}, "
            f"e.g. '0 */5 * * * *' for every 5 minutes{hint}"
        )
    values = [parse_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
    return Schedule(
        expression=text,
        seconds=tuple(sorted(values[0])),
        minutes=tuple(sorted(values[1])),
        hours=tuple(sorted(values[2])),
        days=frozenset(values[3]),
        months=frozenset(values[4]),
        weekdays=frozenset(values[5]),
    )


def parse_field(text: str, name: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    """The values one field allows, e.g. parse_field("*/15", "minute", 0, 59) == {0, 15, 30, 45}."""
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"the {name} field '{text}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"the {name} field '{text}': the step after '/' must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            first = _value(start_text, text, name, low, high, names)
            last = _value(end_text, text, name, low, high, names)
            if first > last:
                raise ScheduleError(f"the {name} field '{text}': the range {base} runs backwards")
        else:
            first = _value(base, text, name, low, high, names)
            last = high if slash else first
        out.update(range(first, last + 1, step))
    return out


def _value(token: str, text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        number = int(token)
        if not low <= number <= high:
            raise ScheduleError(f"the {name} field '{text}': {number} is outside {low}-{high}")
        return number
    lowered = token.lower()
    if names and len(lowered) >= 3:
        for index, full in enumerate(names):
            if full.startswith(lowered):
                return low + index
    allowed = f"a number {low}-{high}" + (" or a name such as " + names[0][:3].title() if names else "")
    raise ScheduleError(f"the {name} field '{text}': '{token}' is not {allowed}")
