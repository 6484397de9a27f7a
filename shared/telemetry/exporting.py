"""The span and the duration of one export attempt: a batch on its own, or a coalesced run."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.telemetry.instruments import export_ended
from shared.telemetry.spans import SpanNotes, traced

# Outcomes that mark the span as an error ('retried' alone is not one: it will be tried again).
FAILED = ("failed", "failed+retried")


@contextmanager
def exporting(unit: str, destination_id: str, record_type: str, **attributes: Any) -> Iterator[SpanNotes]:
    """The span `export batch` or `export run` around one attempt; when it ends, `export.duration` with the
    outcome the block said (`notes.outcome(...)`), or 'error' if it raised."""
    started = time.monotonic()
    notes: SpanNotes | None = None
    try:
        with traced(f"export {unit}", destination_id=destination_id, record_type=record_type,
                    **attributes) as notes:
            yield notes
    finally:
        outcome = (notes.said if notes is not None else None) or "error"
        export_ended(destination_id, record_type, unit=unit, outcome=outcome, seconds=time.monotonic() - started)


def said(notes: SpanNotes, outcome: str) -> str:
    """Say the attempt's outcome on its span, and return it (for `return said(span, _attempt(...))`)."""
    notes.outcome(outcome, failed=outcome in FAILED)
    return outcome


def run_outcome(outcomes: Iterable[str]) -> str:
    """A run's outcome from its members': the one they share ('landed'), or each kind joined ('failed+retried');
    'skipped' when it exported no member."""
    kinds = sorted(set(outcomes))
    return "+".join(kinds) if kinds else "skipped"
