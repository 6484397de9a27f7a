"""The README's parts that tests hold to what the code does."""

from __future__ import annotations

import re

from scripts.local_settings import REPO_ROOT

README = REPO_ROOT / "README.md"
_ID = re.compile(r"\b[bk][0-9a-f]{31}\b")
_NUMBER = re.compile(r"\d[\d,.]*")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def demo_excerpt() -> list[str]:
    """The lines of the `make demo` excerpt at the top of the README, without its `...` elisions."""
    block = re.search(r"```text\n(.*?)```", readme(), re.DOTALL)
    assert block and "3/4  Export pass" in block[1], "the README's first text block is the demo excerpt"
    return [line for line in block[1].splitlines() if line != "..."]


def shape(line: str) -> str:
    """A printed line with what varies from run to run taken out: ids, numbers, folders, spacing."""
    line = re.sub(r"data in [^)]*\)", "data in FOLDER)", line)
    line = re.sub(r"LOCAL SECRET STORE \S+:", "LOCAL SECRET STORE FILE:", line)
    line = _NUMBER.sub("N", _ID.sub("ID", line))
    return " ".join(line.split())


def sh_commands() -> list[str]:
    """Every command line of the README's ```sh blocks, comments taken off."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", readme(), re.DOTALL):
        lines += [re.sub(r"(^|\s)#.*$", "", line) for line in block.splitlines()]
    return lines
