"""App settings for running locally without the Functions host: the "Values" of local.settings.json.

`func start` reads local.settings.json; `make serve` reads the same file (or, when there is none yet,
local.settings.json.example) so both run with the same settings. Variables already set in the
environment win, so `EXPORT_SCHEDULE="*/30 * * * * *" make serve` works as expected.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("local.settings.json", "local.settings.json.example")


def find_settings_file(root: Path = REPO_ROOT) -> Path:
    for name in CANDIDATES:
        path = root / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"neither {' nor '.join(CANDIDATES)} exists in {root}")


def read_values(path: Path) -> dict[str, str]:
    """The "Values" object of a local.settings.json file, every value as a string."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f"{path} has no \"Values\" object")
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def apply_values(values: dict[str, str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put values into the environment where not already set; return the names that were set."""
    env = os.environ if environ is None else environ
    applied = []
    for key, value in values.items():
        if key not in env:
            env[key] = value
            applied.append(key)
    return applied
