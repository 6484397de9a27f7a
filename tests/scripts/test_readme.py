"""The README says what the code does: every event field intake reads, commands that follow the chosen ports,
the reliability report linked."""

from __future__ import annotations

import json
import re

import pytest

from scripts.local_settings import REPO_ROOT
from shared.intake.event_time import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    PROFILE_IDENTITY_KEYS,
    PROPERTIES_IDENTITY_KEYS,
    PROPERTIES_TIME_KEYS,
    parse_event_time,
)
from tests.scripts.readme_text import demo_excerpt, readme, sh_commands


def event_fields_text() -> str:
    text = readme()
    return text[text.index("Events need an event name and an event time"):text.index("Values pass")]


def test_the_readme_names_every_time_field_intake_reads_in_its_order() -> None:
    text = event_fields_text()
    keys = [*EVENT_TIME_KEYS, *(f"properties.{key}" for key in PROPERTIES_TIME_KEYS)]
    positions = [text.find(f"`{key}`") for key in keys]
    assert -1 not in positions, [key for key, at in zip(keys, positions, strict=True) if at == -1]
    assert positions == sorted(positions), "the README lists the time fields in the order intake tries them"


def test_the_readme_names_every_event_name_and_profile_identity_field() -> None:
    text = event_fields_text()
    keys = [*EVENT_NAME_KEYS, *PROFILE_IDENTITY_KEYS, *(f"{outer}.{key}" for outer, key in PROPERTIES_IDENTITY_KEYS)]
    assert [key for key in keys if f"`{key}`" not in text] == []


def time_examples() -> list[object]:
    text = event_fields_text()
    values = text[text.index("and its value may be:"):text.index("A time outside")]
    found = []
    for quoted in re.findall(r"`([^`]+)`", values):
        try:
            found.append(json.loads(quoted))
        except ValueError:  # a layout such as `YYYYMMDD`, or `Z`
            continue
    return found


@pytest.mark.parametrize("value", time_examples())
def test_every_time_value_the_readme_shows_is_one_intake_accepts(value: object) -> None:
    parse_event_time(value)


def test_the_readme_describes_every_time_format() -> None:
    text = event_fields_text()
    for words in ("10^11 seconds", "10^14 milliseconds", "10^17 microseconds", "10^20 nanoseconds",
                  "`YYYYMMDDHHMMSS`", "`YYYYMMDD`", "$D_", "ISO 8601", "no zone (read as UTC)", "a date alone",
                  "1970-2100"):
        assert words in text, words
    assert len(time_examples()) >= 9


def test_the_readme_links_the_reliability_report() -> None:
    assert "](docs/reliability.md)" in readme()
    assert (REPO_ROOT / "docs" / "reliability.md").is_file()


def test_the_readme_commands_follow_the_chosen_ports() -> None:
    """No command names a fixed local port: the walk-through reads AZURITE_PORT and PORT."""
    fixed = [line for line in sh_commands()
             if re.search(r"(127\.0\.0\.1|localhost):\d", line.replace("${AZURITE_PORT:-10000}", "")
                          .replace("${PORT:-7071}", ""))]
    assert fixed == []
    assert any("${AZURITE_PORT:-10000}" in line for line in sh_commands())
    assert any("${PORT:-7071}" in line for line in sh_commands())


def test_the_demo_excerpt_is_a_first_run_with_its_azurite_named() -> None:
    excerpt = demo_excerpt()
    assert excerpt[0].startswith("Started: http://127.0.0.1:10000/devstoreaccount1, this checkout's Azurite")
    assert excerpt[1].startswith("Using http://127.0.0.1:10000/devstoreaccount1, this checkout's Azurite")
    assert excerpt[-1].startswith("OK: run 1 landed 4,000 new records")
