"""How current a destination is (GET /api/destinations/{id}/status), from markers and one small document, never
from every batch state.

**Up to date** means both:
- no batch of the destination is failed and waiting for a retry or new credentials (a failed batch whose staged
  records retention already deleted cannot be retried, and does not count), and
- no batch accepted more than `threshold` ago is still pending or running (DEFAULT_THRESHOLD, 15 minutes: three
  periods of the default timer, plus the destination's `coalesce.max_delay_seconds`, the wait it asked for).
A pending batch backing off after an error is fine until it is that old.

What one answer reads (storage calls in brackets; none grows with the destination's history):
1. `index/batches/open/{id}/` [1 a 5,000 markers]: its open batches (`shared.control.batch_index`), pending and
   running (the markers' `state`), with when each was accepted (`created`) and is due (`due_at`). An open marker is
   deleted only after the state that ends the batch is saved, and a pass deletes one left behind by a crash, so a
   batch that has landed is counted at most until the next pass, and one not landed is never missed. An intake not
   committed yet (a `staging` marker) is not counted, unless it is older than STAGING_GRACE: its intake died,
   perhaps after its commit, and it is counted as pending until a pass settles it.
2. `index/failed/{id}/` [1]: its failed batches waiting for a retry.
3. `activity/{id}.json` [1]: its last landing, last error and landings per hour, and its consecutive failed export
   runs (`shared.control.destination_activity`, recorded as states are saved).
4. `alerts/outbox/{id}/` [1, and 1 read per alert shown, at most 10]: its latest alerts and how each delivery went
   (`shared.control.alerts_outbox`, issue 17). Paused or not comes from the record the caller read.

A destination deleted and created again is another generation: markers written before its creation (less
CLOCK_SKEW) and batches accepted before it belong to the earlier one and do not count, and the activity is read
for its own generation only. A batch of the earlier generation that was mid-export while the destination was
deleted with ?force=true can fail after the re-creation, leaving a failed marker under the id: when the
activity shows an earlier generation failing after this one's creation, the failed batches' states are read to
keep only this generation's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.control import batch_index
from shared.control.alerts_outbox import public_alert, recent_alerts
from shared.control.batch_state import BatchState, iso
from shared.control.batches import FAILED_PREFIX, STAGING_GRACE, state_blob
from shared.control.destination_activity import (
    HOURS_KEPT,
    DestinationActivity,
    GenerationActivity,
    failing_runs,
    generation_key,
    hour_key,
    read_activity,
)
from shared.control.store import ControlStore
from shared.errors import ValidationFailed

DEFAULT_THRESHOLD = timedelta(minutes=15)
MAX_THRESHOLD = timedelta(days=7)
# Markers carry the storage service's clock, a destination's creation the app's: a few seconds apart at most.
CLOCK_SKEW = timedelta(seconds=5)
LANDED_WINDOW_HOURS = 24


@dataclass(frozen=True)
class Subject:
    """The destination as the status needs it (from its record, which `shared.destinations` reads)."""

    destination_id: str
    generation: str | None
    created_at: datetime  # when this generation was created: what came before is an earlier one's
    threshold: timedelta
    paused: dict[str, Any] | None = None  # the record's pause note (issue 17), as the API shows it
    auto_pause_after: int = 0  # AUTO_PAUSE_AFTER


def threshold_for(requested_seconds: int | None, coalesce_delay_seconds: int | None) -> timedelta:
    """The age past which a batch not landed makes the destination not up to date: the one asked for, or
    DEFAULT_THRESHOLD plus the wait a coalescing destination asked for."""
    if requested_seconds is None:
        return DEFAULT_THRESHOLD + timedelta(seconds=coalesce_delay_seconds or 0)
    limit = int(MAX_THRESHOLD.total_seconds())
    if not 1 <= requested_seconds <= limit:
        message = f"must be between 1 and {limit} seconds (7 days)"
        raise ValidationFailed(f"threshold_seconds {message}",
                               details=[{"field": "threshold_seconds", "message": message}])
    return timedelta(seconds=requested_seconds)


@dataclass(frozen=True)
class _Open:
    """A batch still to export: pending (perhaps backing off until `due_at`) or running."""

    batch_id: str
    state: str
    accepted_at: datetime
    due_at: datetime


def destination_status(control: ControlStore, subject: Subject, now: datetime) -> dict[str, Any]:
    """The status answer: up to date or not and why, counts per state, the oldest batch not landed, the last
    landing and the last error, and landings per hour."""
    activity = read_activity(control, subject.destination_id)
    own = activity.generations.get(generation_key(subject.generation), GenerationActivity())
    open_batches = _open_batches(control, subject, now)
    failed = _failed_batches(control, subject, activity, exclude={b.batch_id for b in open_batches})
    oldest = min(open_batches, key=lambda b: (b.accepted_at, b.batch_id), default=None)
    hours = _landed_by_hour(own, now)
    recent = hours[-LANDED_WINDOW_HOURS:]
    pending = [b for b in open_batches if b.state == "pending"]
    reasons = _reasons(subject, len(failed), oldest, now)
    if subject.paused is not None:
        reasons.insert(0, f"paused ({subject.paused['by']}): {subject.paused['reason']}; its batches wait: resume it "
                          f"(POST /api/destinations/{subject.destination_id}/resume) or PUT new credentials")
    return {
        "destination_id": subject.destination_id,
        "up_to_date": not reasons,
        "reasons": reasons,
        "threshold_seconds": int(subject.threshold.total_seconds()),
        "checked_at": iso(now),
        "counts": {
            "pending": len(pending),
            "retrying": sum(1 for b in pending if b.due_at > now),
            "running": len(open_batches) - len(pending),
            "failed": len(failed),
            "landed_last_24h": sum(h["batches"] for h in recent),
        },
        "records_landed_last_24h": sum(h["records"] for h in recent),
        "oldest_pending": None if oldest is None else {
            "batch_id": oldest.batch_id, "state": oldest.state, "accepted_at": iso(oldest.accepted_at),
            "age_seconds": _seconds(now - oldest.accepted_at)},
        "last_landed": None if own.last_landed is None else {
            **own.last_landed.model_dump(mode="json"), "age_seconds": _seconds(now - own.last_landed.at)},
        "last_error": None if own.last_error is None else own.last_error.model_dump(mode="json"),
        "landed_by_hour": hours,
        "paused": subject.paused,
        "consecutive_failed_runs": len(failing_runs(activity, subject.generation)),
        "auto_pause_after": subject.auto_pause_after,
        "alerts": [public_alert(alert) for alert in recent_alerts(control, subject.destination_id)],
    }


def _open_batches(control: ControlStore, subject: Subject, now: datetime) -> list[_Open]:
    found = []
    for marker in batch_index.open_batches(control, destination_id=subject.destination_id):
        accepted = marker.created
        if accepted is None or accepted < subject.created_at - CLOCK_SKEW:
            continue  # accepted for an earlier generation of the destination
        if marker.staging and now - accepted < STAGING_GRACE:
            continue  # its intake is at work and has not answered yet
        found.append(_Open(marker.batch_id, "running" if marker.state == "running" else "pending", accepted,
                           datetime.fromtimestamp(marker.due_at, UTC)))
    return found


def _failed_batches(control: ControlStore, subject: Subject, activity: DestinationActivity,
                    exclude: set[str]) -> list[str]:
    """Ids of the destination's failed batches waiting for a retry (a batch also due is being retried: open)."""
    since = subject.created_at - CLOCK_SKEW
    ids = [item.name.rsplit("/", 1)[1]
           for item in control.list(f"{FAILED_PREFIX}{subject.destination_id}/")
           if item.modified is None or item.modified >= since]
    ids = [batch_id for batch_id in ids if batch_id not in exclude]
    if ids and _earlier_generation_failed_since(activity, subject):
        ids = [batch_id for batch_id in ids if _belongs(control, batch_id, subject)]
    return ids


def _earlier_generation_failed_since(activity: DestinationActivity, subject: Subject) -> bool:
    own = generation_key(subject.generation)
    return any(key != own and entry.last_error is not None and entry.last_error.at >= subject.created_at - CLOCK_SKEW
               for key, entry in activity.generations.items())


def _belongs(control: ControlStore, batch_id: str, subject: Subject) -> bool:
    """Whether a batch was accepted for this generation of the destination (as `DestinationRecord.owns` says)."""
    doc = control.get(state_blob(batch_id))
    if doc is None:
        return False
    state = BatchState.from_json(doc.data)
    if state.destination_generation is not None:
        return state.destination_generation == subject.generation
    return subject.generation is None or state.created_at >= subject.created_at


def _landed_by_hour(own: GenerationActivity, now: datetime) -> list[dict[str, Any]]:
    """Batches and records landed in each of the last HOURS_KEPT UTC hours, the current one last."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    for back in range(HOURS_KEPT - 1, -1, -1):
        hour = current - timedelta(hours=back)
        count = own.landed_by_hour.get(hour_key(hour))
        hours.append({"hour": iso(hour), "batches": count.batches if count else 0,
                      "records": count.records if count else 0})
    return hours


def _reasons(subject: Subject, failed: int, oldest: _Open | None, now: datetime) -> list[str]:
    """Why the destination is not up to date, in words (empty: it is)."""
    reasons = []
    if failed:
        reasons.append(f"{failed} batch(es) failed and wait for a retry (POST /api/batches/{{batch_id}}/retry) or new "
                       "credentials (PUT the destination); see last_error")
    if oldest is not None and now - oldest.accepted_at > subject.threshold:
        reasons.append(f"batch {oldest.batch_id} was accepted {_words(now - oldest.accepted_at)} ago and is still "
                       f"{oldest.state}, over the {_words(subject.threshold)} allowed")
    return reasons


def _seconds(age: timedelta) -> float:
    return round(max(age.total_seconds(), 0.0), 3)


def _words(age: timedelta) -> str:
    """A duration for people: '90 seconds', '42 minutes', '3.5 hours', '2.0 days'."""
    seconds = max(age.total_seconds(), 0.0)
    if round(seconds) == 1:
        return "1 second"
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"
