"""What leaves the platform: events kept or left out by name, and properties dropped by their dotted path (pure).

- ``include_events`` / ``exclude_events``: exact event names, or patterns where ``*`` stands for any characters
  (none included); case matters. An event is written when it matches an include (or there are none) and no
  exclude. Profiles have no event name: the event lists leave them alone.
- ``drop_properties``: dotted paths, as columns are named (``shared.formats.flatten``: ``properties.$email``,
  ``evtData.Phone``). A field whose flattened name is a path, or lies under one (``profileData`` drops every field
  of that object), is removed from the record before it is written, in every format; an object left empty by it
  goes too. Lists are values: a path does not reach inside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_PATTERNS = 1_000
MAX_PATTERN = 512


def pattern_rule(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of `patterns` whole (``*``: any characters), or None for none."""
    parts = [".*".join(map(re.escape, pattern.split("*"))) for pattern in patterns]
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL) if parts else None


@dataclass(frozen=True)
class RecordFilter:
    """A destination's filters, compiled once per export."""

    include_events: tuple[str, ...] = ()
    exclude_events: tuple[str, ...] = ()
    drop_properties: tuple[str, ...] = ()
    _include: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _exclude: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _drop: frozenset[str] = field(init=False, repr=False, compare=False)
    _descend: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", pattern_rule(self.include_events))
        object.__setattr__(self, "_exclude", pattern_rule(self.exclude_events))
        object.__setattr__(self, "_drop", frozenset(self.drop_properties))
        # The names of the objects a dropped path lies in: only those are walked into.
        object.__setattr__(self, "_descend", frozenset(
            path[:index] for path in self.drop_properties for index, ch in enumerate(path) if ch == "."))

    @property
    def filters_events(self) -> bool:
        return self._include is not None or self._exclude is not None

    @property
    def drops(self) -> bool:
        return bool(self._drop)

    def keeps_event(self, name: str | None) -> bool:
        """Whether an event of this name is written (a record without a name, a profile, always is)."""
        if name is None:
            return True
        if self._include is not None and not self._include.match(name):
            return False
        return self._exclude is None or not self._exclude.match(name)

    def dropped(self, name: str) -> bool:
        """Whether the field of flattened name `name` is dropped: it is a path, or lies under one."""
        if name in self._drop:
            return True
        start = name.find(".")
        while start >= 0:
            if name[:start] in self._drop:
                return True
            start = name.find(".", start + 1)
        return False

    def drop_from(self, record: dict[str, Any], prefix: str = "") -> bool:
        """Remove the dropped fields from `record` (in place); whether anything was removed."""
        removed = False
        for key in list(record):
            name = prefix + key
            value = record[key]
            if self.dropped(name):
                del record[key]
                removed = True
            elif type(value) is dict and value and name in self._descend and self.drop_from(value, name + "."):
                removed = True
                if not value:
                    del record[key]
        return removed

    def kept_columns(self, columns: Sequence[str]) -> tuple[str, ...]:
        """A CSV header without the dropped columns."""
        return tuple(column for column in columns if not self.dropped(column))

