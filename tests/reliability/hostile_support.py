"""Shared pieces of the hostile-input and security tests: the scale knob and "nothing was staged".

RELIABILITY_SCALE (default 1) multiplies the number of generated examples (hypothesis and schemathesis):
    RELIABILITY_SCALE=20 .venv/bin/python -m pytest tests/reliability -q -k "hostile or security"
RELIABILITY_REPORT=path appends one JSON line per test with its counts (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
from typing import Any

from shared.control import batch_index, cursors
from shared.services import Services

SCALE = float(os.environ.get("RELIABILITY_SCALE", "1"))


def examples(base: int) -> int:
    """How many generated examples a property runs: ``base`` for CI, times RELIABILITY_SCALE locally."""
    return max(1, round(base * SCALE))


# The app's own bookkeeping, written by reading requests too: how far the batch index has got, the cursor key.
BOOKKEEPING = {batch_index.BACKFILL, cursors.KEY_BLOB}


def control_blobs(services: Services) -> list[str]:
    """Every blob name in the test's control container, but the app's bookkeeping."""
    container = services.control.container
    if not container.exists():
        return []
    return sorted(blob.name for blob in container.list_blobs() if blob.name not in BOOKKEEPING)


def staged_or_state_blobs(services: Services) -> list[str]:
    """What a refused request must never leave behind: staged records, index markers or batch states."""
    return [name for name in control_blobs(services) if name.startswith(("staged/", "states/", "index/"))]


def report(test: str, **counts: Any) -> None:
    """Record a test's counts for docs/reliability.md (only when RELIABILITY_REPORT names a file)."""
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, "scale": SCALE, **counts}, default=str) + "\n")
