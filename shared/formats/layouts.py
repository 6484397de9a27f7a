"""Where a data file's folders are: the destination's layout, `hive` (the default), `dated`, or a `path_template`
of folders (pure). The product appends the file name it controls (`{run_id}-{part:04d}.{ext}`), so names stay
deterministic whatever the folders.

- hive: ``{type}/date=YYYY-MM-DD/hour=HH/`` (``{type}/date=YYYY-MM-DD/`` for a day partition and for profiles);
- dated: ``{type}/YYYY/MM/DD/HH/`` (``{type}/YYYY/MM/DD/`` likewise), the shape of Mixpanel's folders;
- a template names the folders with ``PLACEHOLDERS``. ``{event}`` is the event name keeping its case, with only
  the characters in ``UNSAFE`` replaced by ``_`` (``event_folder``), and it also splits files by event name.
  Profiles have no hour and no event name: a folder of the template that holds ``{hour}`` or ``{event}`` is left
  out of a profile's path, as the built-in layouts leave the hour out.

``check_template`` is the rule a template is saved under (a ValueError says what is wrong, in words).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Layout = Literal["hive", "dated", "template"]
Granularity = Literal["hour", "day"]
PLACEHOLDERS = ("type", "date", "year", "month", "day", "hour", "event")
HIVE = "{type}/date={date}/hour={hour}/"
DATED = "{type}/{year}/{month}/{day}/{hour}/"
EVENT_ONLY = ("hour", "event")  # placeholders a profile's path has no value for: their folders are left out
MAX_TEMPLATE = 512
MAX_EVENT_FOLDER = 200  # characters; Data Lake Storage allows 255 a path segment
# Characters replaced by "_" in an {event} folder: the path separators ("/", and "\" that tools read as one),
# what a URL gives a meaning to ("?", "#", "%", which is also Hive's escape), what Hadoop paths refuse (":"),
# what Windows file names refuse ('*', '"', '<', '>', '|'), and what glob patterns read ("[", "]", "{", "}").
UNSAFE = frozenset('/\\?#%:*"<>|[]{}')
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_UNSAFE_TEXT = re.compile(r'[\\?#%:*"<>|\[\]]')


def event_folder(name: str) -> str:
    """The folder an event name gives: unsafe characters (``UNSAFE``, control characters) replaced by "_", a
    trailing "." too (Azure drops it from a folder's name), at most ``MAX_EVENT_FOLDER`` characters."""
    folder = "".join("_" if ch in UNSAFE or unicodedata.category(ch)[0] == "C" else ch
                     for ch in name[:MAX_EVENT_FOLDER])
    if folder in {".", ".."} or folder.endswith("."):
        folder = folder[:-1] + "_"
    return folder or "_"


def check_template(template: str, partition: Granularity) -> str:
    """The template as it is stored (ending with "/"), or ValueError naming what is wrong."""
    if not template or len(template) > MAX_TEMPLATE:
        raise ValueError(f"must be 1-{MAX_TEMPLATE} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in template):
        raise ValueError("must not contain control characters")
    body = template[:-1] if template.endswith("/") else template
    segments = body.split("/")
    if template.startswith("/") or "" in segments:
        raise ValueError("must not start with '/' or hold an empty folder ('//'); it names folders only, and a "
                         "trailing '/' is allowed")
    if ".." in template:
        raise ValueError("must not contain '..'")
    used: list[str] = []
    for segment in segments:
        literal = _PLACEHOLDER.sub("", segment)
        if "{" in literal or "}" in literal:
            raise ValueError(f"has an unmatched brace in the folder '{segment}': placeholders are written {{name}}")
        if _UNSAFE_TEXT.search(literal):
            raise ValueError(f"must not contain any of \\ ? # % : * \" < > | [ ] (in the folder '{segment}'): "
                             "readers of blob names give them a meaning")
        if segment.endswith("."):
            raise ValueError(f"must not have a folder ending with '.' ('{segment}'): Azure drops it")
        if segment.startswith(("_", ".")):
            raise ValueError(f"must not have a folder starting with '_' or '.' ('{segment}'): Spark and Hadoop skip "
                             "such folders, and _manifests is the product's")
        names = _PLACEHOLDER.findall(segment)
        unknown = [name for name in names if name not in PLACEHOLDERS]
        if unknown:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            raise ValueError(f"has an unknown placeholder {{{unknown[0]}}}: use {known}")
        used.extend(names)
    _check_placeholders(segments, used, partition)
    return body + "/"


def _check_placeholders(segments: list[str], used: list[str], partition: Granularity) -> None:
    if not _names_a_date(used):
        raise ValueError("must name the date: {date}, or {year}, {month} and {day} (files are partitioned by date)")
    if partition == "hour" and "hour" not in used:
        raise ValueError("must name the hour with {hour}: the destination's partition is 'hour' (or set partition "
                         "to 'day')")
    if partition == "day" and "hour" in used:
        raise ValueError("cannot use {hour}: the destination's partition is 'day', so a file holds a whole day")
    profile_names = [name for segment in segments if not _event_only(segment)
                     for name in _PLACEHOLDER.findall(segment)]
    if not _names_a_date(profile_names):
        raise ValueError("must name the date in folders without {hour} or {event}: profiles have neither, so those "
                         "folders are left out of their paths, and profiles are partitioned by date too")


def _names_a_date(names: list[str]) -> bool:
    return "date" in names or {"year", "month", "day"} <= set(names)


def _event_only(segment: str) -> bool:
    return any(name in EVENT_ONLY for name in _PLACEHOLDER.findall(segment))


@dataclass(frozen=True)
class Folders:
    """A destination's folder rule: `folder_for` gives the folders of a file (prefix included, ending with "/")."""

    prefix: str = ""
    layout: Layout = "hive"
    template: str | None = None
    partition: Granularity = "hour"

    @property
    def splits_by_event(self) -> bool:
        return self.layout == "template" and "{event}" in (self.template or "")

    def pattern(self, record_type: str) -> str:
        """The template this record type's folders follow."""
        if self.layout == "template":
            template = self.template or HIVE
        else:
            template = HIVE if self.layout == "hive" else DATED
            if self.partition == "day":
                template = template.replace("hour={hour}/", "").replace("{hour}/", "")
        if record_type == "profiles":
            template = "".join(segment + "/" for segment in template.rstrip("/").split("/")
                               if not _event_only(segment))
        return template

    def folder_for(self, record_type: str, partition_key: str, export_date: str, event: str | None = None) -> str:
        """The folders of a file: `partition_key` is ``date=YYYY-MM-DD[/hour=HH]`` for events (the export date is
        the date of profiles), `event` the event name when the template splits by it."""
        if record_type == "profiles":
            date, hour = export_date, ""
        else:
            fields = dict(part.split("=", 1) for part in partition_key.split("/") if "=" in part)
            date, hour = fields.get("date", export_date), fields.get("hour", "")
        year, month, day = date.split("-")
        values = {"type": record_type, "date": date, "year": year, "month": month, "day": day, "hour": hour,
                  "event": event_folder(event) if event is not None else ""}
        return self.prefix + _PLACEHOLDER.sub(lambda found: values[found.group(1)], self.pattern(record_type))
