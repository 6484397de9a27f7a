"""Folder layouts as tables: where each layout puts a file, how an event name becomes a folder, and which path
templates are saved (and why the others are not)."""

from __future__ import annotations

import pytest

from shared.formats.layouts import Folders, check_template, event_folder


@pytest.mark.parametrize(("folders", "record_type", "key", "event", "expected"), [
    (Folders(), "events", "date=2026-11-20/hour=09", None, "events/date=2026-11-20/hour=09/"),
    (Folders("x/"), "profiles", "", None, "x/profiles/date=2026-12-01/"),
    (Folders(partition="day"), "events", "date=2026-11-20", None, "events/date=2026-11-20/"),
    (Folders(layout="dated"), "events", "date=2026-11-20/hour=09", None, "events/2026/11/20/09/"),
    (Folders(layout="dated", partition="day"), "events", "date=2026-11-20", None, "events/2026/11/20/"),
    (Folders(layout="dated"), "profiles", "", None, "profiles/2026/12/01/"),
    (Folders("p/", "template", "exports/{type}/event={event}/{year}-{month}-{day}/h{hour}/"), "events",
     "date=2026-11-20/hour=09", "Product Viewed", "p/exports/events/event=Product Viewed/2026-11-20/h09/"),
    (Folders("", "template", "exports/{type}/event={event}/{year}-{month}-{day}/h{hour}/"), "profiles", "", None,
     "exports/profiles/2026-12-01/"),
    (Folders("", "template", "{event}/{date}/", "day"), "events", "date=2026-11-20", "a/b", "a_b/2026-11-20/"),
])
def test_each_layout_names_its_folders(folders: Folders, record_type: str, key: str, event: str | None,
                                       expected: str) -> None:
    assert folders.folder_for(record_type, key, "2026-12-01", event) == expected


@pytest.mark.parametrize(("name", "folder"), [
    ("Product Viewed", "Product Viewed"),  # case and spaces kept
    ("Zürich 東京 🎧", "Zürich 東京 🎧"),
    ("a/b\\c", "a_b_c"),
    ("what?#50%", "what__50_"),
    ('x:y*z"<>|', "x_y_z____"),
    ("[a]{b}", "_a__b_"),
    ("tab\there\nnew\x00", "tab_here_new_"),
    ("..", "._"),
    (".", "_"),
    ("ends.", "ends_"),
    ("$pageview", "$pageview"),
    ("e" * 300, "e" * 200),
])
def test_an_event_name_keeps_its_case_with_only_unsafe_characters_replaced(name: str, folder: str) -> None:
    assert event_folder(name) == folder


@pytest.mark.parametrize(("template", "partition", "stored"), [
    ("{type}/{date}/{hour}", "hour", "{type}/{date}/{hour}/"),
    ("{type}/{year}/{month}/{day}/{hour}/", "hour", "{type}/{year}/{month}/{day}/{hour}/"),
    ("exports/{type}/event={event}/dt={date}/", "day", "exports/{type}/event={event}/dt={date}/"),
    ("{date}", "day", "{date}/"),
])
def test_a_template_that_names_its_partition_is_saved_ending_with_a_slash(template: str, partition: str,
                                                                         stored: str) -> None:
    assert check_template(template, partition) == stored  # type: ignore[arg-type]


@pytest.mark.parametrize(("template", "partition", "reason"), [
    ("../{type}/{date}/{hour}/", "hour", "'..'"),
    ("{type}/..{date}/{hour}/", "hour", "'..'"),
    ("{type}//{date}/{hour}/", "hour", "empty folder"),
    ("/{type}/{date}/{hour}/", "hour", "start with '/'"),
    ("{type}/{date}/{hour}//", "hour", "empty folder"),
    ("", "hour", "1-512 characters"),
    ("{type}/{dat}/{hour}/", "hour", "unknown placeholder {dat}"),
    ("{type}/{date/{hour}/", "hour", "unmatched brace"),
    ("{type}/{event}/{hour}/", "hour", "must name the date"),
    ("{type}/{date}/", "hour", "{hour}"),
    ("{type}/{date}/{hour}/", "day", "cannot use {hour}"),
    ("{type}/{date}-{event}/", "day", "folders without {hour} or {event}"),
    ("{type}/_x/{date}/{hour}/", "hour", "starting with '_'"),
    ("{type}/a?b/{date}/{hour}/", "hour", "must not contain any of"),
    ("{type}/50%/{date}/{hour}/", "hour", "must not contain any of"),
    ("{type}/x./{date}/{hour}/", "hour", "ending with '.'"),
    ("{type}/\x07/{date}/{hour}/", "hour", "control characters"),
    ("{type}/{date}/{hour}/" + "x" * 600, "hour", "1-512 characters"),
])
def test_a_template_that_could_escape_or_lose_its_partition_is_refused_saying_why(template: str, partition: str,
                                                                                  reason: str) -> None:
    with pytest.raises(ValueError, match=None) as refused:
        check_template(template, partition)  # type: ignore[arg-type]
    assert reason in str(refused.value)
