"""Alerts raised by the timer (issue 17): the conditions no export sees (a SAS token expiring or expired), and the
alerts and automatic pauses a crash may have lost after the change that called for them was committed.

Each is raised from durable state and kept to one per destination, condition and day by the outbox's names
(`shared.control.alerts_outbox`): raising one that exists does nothing, so this can run as often as the timer.
- `batch_failed`: the failed markers (`index/failed/{destination}/{batch}`) of the last day whose destination has
  no such alert for that day (its batch's state read for the facts).
- the rest from a scan of every destination (its record and its activity), at most every SCAN_EVERY: `sas_expiring`
  (its token expires within 7 days), `sas_expired`, `paused` (paused within the last day, resumed since or
  not), `batch_failed` again (the activity's last error, for a failed batch retried since, whose marker went),
  `recovered` (a recovery within the last day), and the automatic pause itself (AUTO_PAUSE_AFTER failed runs,
  not paused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.control import destination_activity
from shared.control.alerts_outbox import AlertKind, day_of, new_alert, raise_alert, raised_keys
from shared.control.batch_state import BatchState, iso
from shared.control.batches import FAILED_PREFIX, state_blob
from shared.control.store import ControlStore
from shared.destinations.pauses import paused_alert
from shared.destinations.record import DestinationRecord
from shared.destinations.sas import EXPIRY_WARNING_WINDOW, format_time
from shared.destinations.service import DESTINATIONS_PREFIX
from shared.logging_setup import log_event

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)

SCAN_EVERY = timedelta(hours=1)
SCAN_BLOB = "alerts/scan.json"
LOOK_BACK = timedelta(days=1)  # changes older than this that lost their alert are not alerted any more


@dataclass
class Raised:
    lost_failures: int = 0  # batch_failed alerts raised again from failed markers
    scanned: int = 0  # destinations scanned (0: not this time)
    raised: dict[str, int] | None = None  # by kind, from the scan
    auto_paused: int = 0


def raise_lost_failures(control: ControlStore, now: datetime, raised: set[tuple[str, str, str]]) -> int:
    """A `batch_failed` alert for each destination and day of the last LOOK_BACK with a failed marker and none."""
    newest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for item in control.list(FAILED_PREFIX):
        if item.modified is None or item.modified < now - LOOK_BACK:
            continue
        destination_id, _, batch_id = item.name[len(FAILED_PREFIX):].partition("/")
        key = (destination_id, day_of(item.modified))
        if (*key, "batch_failed") not in raised and (key not in newest or item.modified > newest[key][0]):
            newest[key] = (item.modified, batch_id)
    count = 0
    for (destination_id, _), (_, batch_id) in sorted(newest.items()):
        doc = control.get(state_blob(batch_id))
        if doc is None:
            continue
        state = BatchState.from_json(doc.data)
        error = state.last_error
        if state.state != "failed" or state.discarded_at is not None or error is None:
            continue
        if error.code in destination_activity.NOT_RUN_FAILURES:
            continue
        count += raise_alert(control, new_alert("batch_failed", destination_id, error.at, {
            "batch_id": batch_id, "run": state.run_id or batch_id, "error_code": error.code,
            "message": error.message}, now))
    return count


def scan_due(control: ControlStore, now: datetime, every: timedelta) -> bool:
    doc = control.get(SCAN_BLOB)
    if doc is None:
        return True
    return now - datetime.fromisoformat(str(doc.data.get("scanned_at"))) >= every


def scan_destinations(services: Services, now: datetime, raised: set[tuple[str, str, str]]) -> Raised:
    """Every destination's SAS expiry, pause and recovery alerts, and its automatic pause if a crash lost it."""
    control = services.control
    result = Raised(raised={})
    for item in control.list(DESTINATIONS_PREFIX):
        doc = control.get(item.name)
        if doc is None:
            continue
        record = DestinationRecord.from_json(doc.data)
        result.scanned += 1
        try:
            if services.destinations.pause_if_failing(record.id):
                result.auto_paused += 1
                record = services.destinations.get_record(record.id)
            for kind, alert_args in _conditions(control, record, now):
                if (record.id, day_of(alert_args[0]), kind) in raised:
                    continue
                if raise_alert(control, new_alert(kind, record.id, alert_args[0], alert_args[1], now)):
                    assert result.raised is not None
                    result.raised[kind] = result.raised.get(kind, 0) + 1
        except Exception as exc:  # one destination's trouble must not stop the others' alerts
            log_event(log, "alert conditions not checked", logging.WARNING, destination_id=record.id,
                      error=type(exc).__name__)
    control.put(SCAN_BLOB, {"scanned_at": iso(now)})
    return result


def _conditions(control: ControlStore, record: DestinationRecord,
                now: datetime) -> list[tuple[AlertKind, tuple[datetime, dict[str, object]]]]:
    """The alerts a destination's record and activity call for now: (kind, (moment of the condition, facts))."""
    found: list[tuple[AlertKind, tuple[datetime, dict[str, object]]]] = []
    sas = record.auth.sas.info() if record.auth.sas is not None else None
    if sas is not None and sas.expiry is not None:
        facts: dict[str, object] = {"expiry": format_time(sas.expiry)}
        if sas.expiry <= now:
            found.append(("sas_expired", (now, facts)))
        elif sas.expiry <= now + EXPIRY_WARNING_WINDOW:
            days = round((sas.expiry - now).total_seconds() / 86400, 1)
            found.append(("sas_expiring", (now, {**facts, "days_left": days})))
    activity = destination_activity.read_activity(control, record.id)
    entry = activity.generations.get(destination_activity.generation_key(record.generation))
    if record.paused is not None:
        alert = paused_alert(record, now)
        if alert.occurred_at >= now - LOOK_BACK:
            found.append(("paused", (alert.occurred_at, dict(alert.details))))
    elif entry is not None and entry.last_pause is not None and entry.last_pause.at >= now - LOOK_BACK:
        pause = entry.last_pause  # paused and resumed since
        found.append(("paused", (pause.at, {"by": pause.by, "reason": pause.reason, "failed_runs": pause.failed_runs,
                                            "paused_at": iso(pause.at)})))
    error = entry.last_error if entry is not None else None
    if error is not None and not error.will_retry and error.code not in destination_activity.NOT_RUN_FAILURES \
            and error.at >= now - LOOK_BACK:  # its failed marker may be gone: retried, even landed since
        found.append(("batch_failed", (error.at, {"batch_id": error.batch_id, "run": error.run_id or error.batch_id,
                                                  "error_code": error.code, "message": error.message})))
    recovery = entry.last_recovery if entry is not None else None
    if recovery is not None and recovery.at >= now - LOOK_BACK:
        found.append(("recovered", (recovery.at, destination_activity.recovery_details(recovery))))
    return found


def raise_from_state(services: Services, now: datetime, *, scan_every: timedelta) -> Raised:
    """Raise what the durable state calls for and the outbox lacks (see the module's docstring)."""
    control = services.control
    raised = raised_keys(control, day_of(now - LOOK_BACK))
    lost = raise_lost_failures(control, now, raised)
    result = scan_destinations(services, now, raised) if scan_due(control, now, scan_every) else Raised()
    result.lost_failures = lost
    return result
