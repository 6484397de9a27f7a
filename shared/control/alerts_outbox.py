"""The alert outbox (issue 17): one document per alert that a destination's condition raised, from which the timer
delivers it (`shared.alerts.delivery`), never the export that raised it.

  alerts/outbox/{destination_id}/{day}/{kind}.json   an alert: its facts, and how each delivery went
  alerts/delivery                                    leased by the one worker delivering alerts at a time

**The dedupe rule is the name.** An alert's document is named by its destination, the UTC day of its condition and
its kind, and created only if absent (a create-only write): one alert per condition per destination per day,
whoever raises it and however often. Its `alert_id` (the `webhook-id` receivers dedupe on) is derived from the
same three, so it is the same on every retry of its delivery.

**Nothing is lost, nothing doubled.** An alert is raised best effort right after the state change that causes it
is committed (a batch's failure, a pause, a recovery: `raise_alert`), so a crash between the two can leave the
change without its alert. The timer raises again every alert whose condition it can see in the durable state
(failed markers, paused records, SAS expiries, the activity's recoveries: `shared.alerts.conditions`): raising
one that exists is a refused create, so the crash costs a delay of one timer period, never an alert, and never a
second one. Delivery is at least once with one `alert_id`: a crash after the receiver answered and before the
outcome was saved sends it again, with the same `webhook-id`, which a receiver following Standard Webhooks
drops (said in the README).

Documents hold facts in words and ids (a batch id, an error's code and message as the batch's state has them, a
SAS token's expiry), never a secret, and never a webhook URL (only its origin).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.control.batch_state import Timestamp, iso
from shared.control.leases import ensure_lease_blob
from shared.control.store import ControlStore, PreconditionFailed
from shared.logging_setup import log_event

log = logging.getLogger(__name__)

OUTBOX_PREFIX = "alerts/outbox/"
DELIVERY_LEASE_BLOB = "alerts/delivery"
KEEP_DAYS = 7  # alerts older than this are deleted by the timer; the status shows the ones kept

AlertKind = Literal["batch_failed", "paused", "sas_expiring", "sas_expired", "recovered"]
KINDS: tuple[AlertKind, ...] = ("batch_failed", "paused", "sas_expiring", "sas_expired", "recovered")
AlertState = Literal["pending", "delivered", "failed", "no_target"]
TargetName = Literal["app", "destination"]  # ALERT_WEBHOOK_URL, or the destination's alerts.webhook_url


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Delivery(_Model):
    """How sending an alert to one target went."""

    state: Literal["pending", "delivered", "failed"] = "pending"  # failed: given up after its attempts
    attempts: int = 0
    origin: str | None = None  # scheme://host[:port] it was sent to: never the URL, which is a credential
    last_attempt_at: Timestamp | None = None
    next_attempt_at: Timestamp | None = None
    delivered_at: Timestamp | None = None
    status_code: int | None = None  # the receiver's answer to the last attempt, if it answered
    last_error: str | None = None  # why the last attempt failed, in words


class Alert(_Model):
    alert_id: str
    kind: AlertKind
    destination_id: str
    day: str  # YYYY-MM-DD (UTC) of the condition: with the destination and the kind, the dedupe key
    occurred_at: Timestamp
    created_at: Timestamp
    details: dict[str, Any] = {}  # the facts the text is made of (ids, codes, words, times): never a secret
    state: AlertState = "pending"
    next_attempt_at: Timestamp | None = None  # while pending: when the timer next tries it
    deliveries: dict[str, Delivery] = {}  # by target name, once the timer has tried it

    def changed(self, **changes: Any) -> Alert:
        return Alert.model_validate({**dict(self), **changes})


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def alert_blob(destination_id: str, day: str, kind: str) -> str:
    return f"{OUTBOX_PREFIX}{destination_id}/{day}/{kind}.json"


def alert_id_of(destination_id: str, day: str, kind: str) -> str:
    """The `webhook-id`: the same for every delivery of one alert, and never another alert's."""
    digest = hashlib.sha256(f"{destination_id}\n{day}\n{kind}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def new_alert(kind: AlertKind, destination_id: str, occurred_at: datetime, details: dict[str, Any],
              now: datetime | None = None) -> Alert:
    day = day_of(occurred_at)
    created = now or datetime.now(UTC)
    return Alert(alert_id=alert_id_of(destination_id, day, kind), kind=kind, destination_id=destination_id, day=day,
                 occurred_at=occurred_at, created_at=created, details=details, next_attempt_at=created)


def _metadata(alert: Alert) -> dict[str, str]:
    """What the timer's listing picks due alerts by, without reading them."""
    due = alert.next_attempt_at.timestamp() if alert.state == "pending" and alert.next_attempt_at else 0
    return {"state": alert.state, "due": str(int(due)), "kind": alert.kind}  # whole seconds, rounded down


def raise_alert(control: ControlStore, alert: Alert) -> bool:
    """Create the alert's document unless one for its condition, destination and day exists: True if this call
    created it. Raises what control storage raises (`raise_best_effort` does not)."""
    try:
        control.put(alert_blob(alert.destination_id, alert.day, alert.kind), alert.model_dump(mode="json"),
                    create_only=True, metadata=_metadata(alert))
    except PreconditionFailed:
        return False
    log_event(log, "alert raised", alert_id=alert.alert_id, kind=alert.kind, destination_id=alert.destination_id,
              day=alert.day)
    return True


def raise_best_effort(control: ControlStore, alert: Alert) -> bool:
    """`raise_alert` after a state change was committed: never raises (the timer raises it again if lost)."""
    try:
        return raise_alert(control, alert)
    except Exception as exc:
        log_event(log, "alert not raised; the timer raises it again", logging.WARNING, kind=alert.kind,
                  destination_id=alert.destination_id, error=type(exc).__name__)
        return False


def raised_keys(control: ControlStore, since_day: str) -> set[tuple[str, str, str]]:
    """(destination id, day, kind) of every alert raised on `since_day` or later (one listing)."""
    found = set()
    for item in control.list(OUTBOX_PREFIX):
        parts = item.name[len(OUTBOX_PREFIX):].removesuffix(".json").split("/")
        if len(parts) == 3 and parts[1] >= since_day:
            found.add((parts[0], parts[1], parts[2]))
    return found


def due_alerts(control: ControlStore, now: datetime) -> list[str]:
    """Names of the pending alerts whose next attempt is due, oldest due first."""
    due = []
    for item in control.list(OUTBOX_PREFIX, with_metadata=True):
        if item.metadata.get("state") == "pending" and float(item.metadata.get("due", "0")) <= now.timestamp():
            due.append((float(item.metadata.get("due", "0")), item.name))
    return [name for _, name in sorted(due)]


def read_alert(control: ControlStore, name: str) -> tuple[Alert, str] | None:
    doc = control.get(name)
    return None if doc is None else (Alert.model_validate(doc.data), doc.etag)


def save_alert(control: ControlStore, name: str, alert: Alert, etag: str) -> str:
    """Save a delivery's outcome, conditional on the document read (PreconditionFailed if it changed)."""
    return control.put(name, alert.model_dump(mode="json"), etag=etag, metadata=_metadata(alert))


def recent_alerts(control: ControlStore, destination_id: str, limit: int = 10) -> list[Alert]:
    """The destination's latest alerts (newest day first), for its status."""
    names = sorted((item.name for item in control.list(f"{OUTBOX_PREFIX}{destination_id}/")), reverse=True)
    found = []
    for name in names[:limit]:
        read = read_alert(control, name)
        if read is not None:
            found.append(read[0])
    return sorted(found, key=lambda a: a.occurred_at, reverse=True)


def prune(control: ControlStore, now: datetime) -> int:
    """Delete alerts of days older than KEEP_DAYS; returns how many."""
    oldest = day_of(now - timedelta(days=KEEP_DAYS))
    deleted = 0
    for item in list(control.list(OUTBOX_PREFIX)):
        parts = item.name[len(OUTBOX_PREFIX):].split("/")
        if len(parts) == 3 and parts[1] < oldest:
            control.delete(item.name)
            deleted += 1
    return deleted


def ensure_delivery_lease_blob(control: ControlStore) -> str:
    """The blob the delivering worker leases, created once."""
    return ensure_lease_blob(control, DELIVERY_LEASE_BLOB)


def public_alert(alert: Alert) -> dict[str, Any]:
    """An alert as the status answer shows it."""
    return {"alert_id": alert.alert_id, "kind": alert.kind, "day": alert.day, "occurred_at": iso(alert.occurred_at),
            "state": alert.state, "details": alert.details,
            "next_attempt_at": iso(alert.next_attempt_at) if alert.state == "pending" and alert.next_attempt_at
            else None,
            "deliveries": {name: delivery.model_dump(mode="json") for name, delivery in alert.deliveries.items()}}
