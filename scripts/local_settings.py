"""App settings for running locally without the Functions host: the "Values" of local.settings.json.

`func start` reads local.settings.json; `make serve` reads the same file (or, when there is none yet,
local.settings.json.example) so both run with the same settings. Variables already set in the
environment win, so `EXPORT_SCHEDULE="*/30 * * * * *" make serve` works as expected.

    .venv/bin/python -m scripts.local_settings init

writes local.settings.json from the example. `func start` (the Functions host) reads
`UseDevelopmentStorage=true` as Azurite on port 10000, whatever AZURITE_PORT says; with AZURITE_PORT set to
another port, `init` writes the explicit connection string of the Azurite on that port instead.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from scripts import local_azurite

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


def merged_values(root: Path = REPO_ROOT) -> dict[str, str]:
    """The settings `make serve` would run with: the settings file's Values, the environment winning."""
    return {**read_values(find_settings_file(root)), **os.environ}


def init(root: Path = REPO_ROOT, environ: MutableMapping[str, str] | None = None) -> str:
    """Write local.settings.json from the example, for the Azurite on AZURITE_PORT; return what was done."""
    target, example = root / CANDIDATES[0], root / CANDIDATES[1]
    if target.exists():
        raise FileExistsError(f"{target.name} exists already; edit it, or move it away and run init again")
    document = json.loads(example.read_text(encoding="utf-8"))
    port = local_azurite.port_from_env(environ)
    if port != local_azurite.DEFAULT_PORT:
        document["Values"]["AzureWebJobsStorage"] = local_azurite.connection_string(port)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return (f"wrote {target.name}: control storage is the Azurite on {local_azurite.account_url(port)}"
            + ("" if port != local_azurite.DEFAULT_PORT else " (UseDevelopmentStorage=true)"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["init"]:
        print("usage: python -m scripts.local_settings init   (writes local.settings.json for AZURITE_PORT)",
              file=sys.stderr)
        return 2
    try:
        print(init())
    except (FileExistsError, local_azurite.AzuriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
