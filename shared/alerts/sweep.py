"""What the timer does for alerts each time it fires (issue 17): raise what the state calls for and the outbox
lacks, deliver the due alerts, and delete alerts older than KEEP_DAYS; under one lease, so that one worker at a
time delivers (a duplicate delivery is the only harm two could do, and the timer's schedule already runs one).
Never raises: the timer's other work (the sweep of overdue batches, retention) does not depend on it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.alerts.conditions import SCAN_EVERY, Raised, raise_from_state
from shared.alerts.delivery import DeliverySummary, deliver_due
from shared.control.alerts_outbox import ensure_delivery_lease_blob, prune
from shared.control.batches import now_utc
from shared.control.leases import BatchLease
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)

DELIVERY_BUDGET_SECONDS = 60.0
LEASE_SECONDS = 60


@dataclass(frozen=True)
class AlertSweep:
    held_elsewhere: bool = False  # another worker was delivering: nothing done here
    raised: Raised | None = None
    delivered: DeliverySummary | None = None
    pruned: int = 0


def sweep_alerts(services: Services, *, clock: Callable[[], datetime] = now_utc,
                 scan_every: timedelta = SCAN_EVERY,
                 budget_seconds: float = DELIVERY_BUDGET_SECONDS) -> AlertSweep:
    try:
        return _sweep(services, clock, scan_every, budget_seconds)
    except Exception as exc:  # control storage down, a bug: the alerts wait for the next run
        log_event(log, "alert sweep interrupted; it runs again at the next timer", logging.WARNING,
                  error=type(exc).__name__, exc_info=exc)
        return AlertSweep()


def _sweep(services: Services, clock: Callable[[], datetime], scan_every: timedelta,
           budget_seconds: float) -> AlertSweep:
    control = services.control
    lease = BatchLease(control.container, ensure_delivery_lease_blob(control), LEASE_SECONDS)
    if not lease.acquire():
        return AlertSweep(held_elsewhere=True)
    with lease:
        now = clock()
        raised = raise_from_state(services, now, scan_every=scan_every)
        delivered = deliver_due(services, clock(), budget_seconds=budget_seconds, clock=clock)
        pruned = prune(control, now) if raised.scanned else 0
    if delivered.due or raised.lost_failures or raised.raised or raised.auto_paused:
        log_event(log, "alert sweep finished", due=delivered.due, delivered=delivered.delivered,
                  retrying=delivered.retrying, failed=delivered.failed, no_target=delivered.no_target,
                  left=delivered.left, raised_again=raised.lost_failures, raised=raised.raised or {},
                  auto_paused=raised.auto_paused, pruned=pruned)
    return AlertSweep(raised=raised, delivered=delivered, pruned=pruned)
