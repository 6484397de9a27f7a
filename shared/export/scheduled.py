"""What the timer does each time it fires: one export pass, then one bounded run of retention.

One function, called by the timer trigger (function_app.py) and by `make serve`'s in-process timer, so both
run exactly the same work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.control.retention import RetentionSummary, sweep
from shared.export.runner import PassSummary, run_export_pass

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services


def run_scheduled(services: Services) -> tuple[PassSummary, RetentionSummary]:
    """Export what is due, then apply retention; each logs its own summary."""
    exported = run_export_pass(services)
    return exported, sweep(services.control, services.settings)
