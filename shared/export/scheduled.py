"""What the timer does each time it fires: the sweep of overdue batches (the queue exports; the timer sends
again what it lost, or exports when there is no queue), one bounded run of retention, then the alerts (issue 17:
raised again if lost, delivered).

One function, called by the timer trigger (function_app.py) and by `make serve`'s in-process timer, so both
run exactly the same work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.alerts.sweep import sweep_alerts
from shared.control.retention import RetentionSummary, sweep
from shared.export.sweeper import SweepSummary, sweep_due

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services


def run_scheduled(services: Services) -> tuple[SweepSummary, RetentionSummary]:
    """Sweep overdue batches, apply retention, then deliver alerts (last: a receiver that does not answer delays
    neither, and alerts never raise); each logs its own summary."""
    swept = sweep_due(services)
    retained = sweep(services.control, services.settings)
    sweep_alerts(services)
    return swept, retained
