"""How long a batch waits before its next attempt after a problem that waiting may fix."""

from __future__ import annotations

import random

from shared.settings import Settings


def backoff_delay(settings: Settings, attempts: int) -> float:
    """RETRY_BASE_SECONDS doubling with each attempt, at most RETRY_MAX_SECONDS, jittered by +-50%."""
    delay = min(settings.retry_max_seconds, settings.retry_base_seconds * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.5, 1.5)
