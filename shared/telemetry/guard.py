"""Telemetry never fails its caller: every call the app makes into it is guarded."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")
log = logging.getLogger(__name__)


def guarded(function: Callable[P, None]) -> Callable[P, None]:
    """`function`, with any exception it raises dropped (logged at DEBUG by type only: an SDK's message may
    quote an endpoint). A metric or a span lost is better than an intake refused or an export failed."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            function(*args, **kwargs)
        except Exception as exc:
            log.debug("telemetry call %s failed: %s", function.__name__, type(exc).__name__)

    return call
