"""Pausing a destination (issue 17): the record with and without its pause note, the conditional rewrite that
changes nothing else, the reason an automatic pause gives, and what the activity and the alerts keep of a pause.
`DestinationService.pause`, `resume` and `pause_if_failing` use these; exports skip a paused destination
(`shared.export`), and intake does not look.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from shared.control.alerts_outbox import Alert, new_alert
from shared.control.destination_activity import FailedRun, PauseRecord
from shared.control.store import ControlStore, PreconditionFailed
from shared.destinations.record import DestinationRecord, PauseNote
from shared.errors import Conflict, NotFound, ValidationFailed

PAUSE_WRITE_TRIES = 5  # conditional writes of a pause or resume before the request gives up with a 409
MAX_PAUSE_REASON = 500

RecordChange = Callable[[DestinationRecord], DestinationRecord | None]  # None: nothing to change


def checked_reason(reason: str) -> str:
    text = reason.strip()
    if not text or len(text) > MAX_PAUSE_REASON or any(not ch.isprintable() for ch in text):
        message = f"must be 1-{MAX_PAUSE_REASON} printable characters"
        raise ValidationFailed(f"reason {message}", details=[{"field": "reason", "message": message}])
    return text


def pause_kept(previous: DestinationRecord | None, credentials_changed: bool) -> dict[str, Any]:
    """A paused destination stays paused through a save, unless the save brings new credentials."""
    if previous is None or previous.paused is None or credentials_changed:
        return {}
    return {"paused": previous.paused}


def with_pause(note: PauseNote, generation: str | None) -> RecordChange:
    """Paused with `note`, unless it is paused already (its first reason stays) or, with `generation` (an automatic
    pause), is another generation of the destination than the one whose runs failed."""

    def change(record: DestinationRecord) -> DestinationRecord | None:
        if record.paused is not None or (generation is not None and record.generation != generation):
            return None
        return DestinationRecord.model_validate({**record.to_json(), "paused": note.model_dump()})

    return change


def without_pause(record: DestinationRecord) -> DestinationRecord | None:
    if record.paused is None:
        return None
    return DestinationRecord.model_validate({k: v for k, v in record.to_json().items() if k != "paused"})


def rewrite(control: ControlStore, blob: str, destination_id: str,
            change: RecordChange) -> tuple[DestinationRecord, bool]:
    """Apply `change` to the stored record with a conditional write, reading again after a lost race: the secret
    and everything else stay as they are, `updated_at` too (it says when it was PUT). Returns the record and
    whether it changed."""
    for _ in range(PAUSE_WRITE_TRIES):
        doc = control.get(blob)
        if doc is None:
            raise NotFound(f"destination '{destination_id}' does not exist")
        record = DestinationRecord.from_json(doc.data)
        updated = change(record)
        if updated is None:
            return record, False
        try:
            control.put(blob, updated.to_json(), etag=doc.etag)
        except PreconditionFailed:
            continue
        return updated, True
    raise Conflict(f"destination '{destination_id}' kept changing while it was being paused or resumed; retry")


def auto_pause_reason(failing: Sequence[FailedRun], after: int) -> str:
    last = failing[-1]
    return (f"paused after {len(failing)} consecutive failed export runs (AUTO_PAUSE_AFTER={after}); the last, of "
            f"batch {last.batch_id}: {last.code}: {last.message}")[:MAX_PAUSE_REASON]


def ended(record: DestinationRecord, moment: datetime) -> PauseRecord | None:
    """The pause a resume at `moment` ends, as the activity keeps it."""
    note = record.paused
    if note is None:
        return None
    return PauseRecord(at=datetime.fromisoformat(note.at), by=note.by, reason=note.reason,
                       failed_runs=note.failed_runs, resumed_at=moment)


def paused_alert(record: DestinationRecord, now: datetime) -> Alert:
    """The `paused` alert of a paused record."""
    note = record.paused
    assert note is not None
    return new_alert("paused", record.id, datetime.fromisoformat(note.at), {
        "by": note.by, "reason": note.reason, "failed_runs": note.failed_runs, "paused_at": note.at}, now)
