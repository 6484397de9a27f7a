"""`make help`, and `make` alone: every target, one line each, with what it does."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.local_settings import REPO_ROOT
from tests.scripts.local_env import local_env, make


def phony_targets() -> list[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    found = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert found, "the Makefile declares its targets .PHONY"
    return found[1].split()


def test_make_help_lists_every_target_with_one_line_and_make_alone_does_the_same(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    shown = make("help", env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.startswith("make <target>")
    assert "AZURITE_PORT=10000" in header and "PORT=7071" in header
    described = {}
    for line in lines:
        found = re.fullmatch(r"  ([a-z][a-z-]*) +(\S.*)", line)
        assert found, f"not a target line: {line!r}"
        assert found[1] not in described, f"{found[1]} is listed twice"
        described[found[1]] = found[2]
    assert sorted(described) == sorted(phony_targets())
    assert all(len(text) > 20 for text in described.values()), described

    alone = make(env=env, timeout=60)
    assert alone.returncode == 0 and alone.stdout == shown.stdout


def test_make_help_shows_the_ports_it_would_use(tmp_path: Path) -> None:
    shown = make("help", env=local_env(tmp_path, AZURITE_PORT="10500", PORT="7171"), timeout=60)
    assert "AZURITE_PORT=10500" in shown.stdout.splitlines()[0]
    assert "PORT=7171" in shown.stdout.splitlines()[0]
