"""Batch state in control storage: staging, the due index, status, retry.

The state document is a `BatchState` (`shared.control.batch_state`); every change to it is a transition
(`shared.control.transitions`). This module reads and writes the documents and keeps the markers in step.

Layout in the control container:
  states/{batch_id}.json        the batch's state document (leased while a worker exports it)
  staged/{batch_id}/{s}/records.jsonl  staged records, one JSON record per line, partition after partition
                                in key order (the state names each partition's byte range), under a staging
                                id {s} new to each intake request; before issue 13, {n}.jsonl: one blob per
                                partition, which states staged then still name
  index/batches/open/{dest}/{newest}  marker: the batch still needs exporting (metadata: state, destination,
                                due_at, bytes); written first, saying `staging`, by intake
                                (`shared.control.batch_index`)
  index/failed/{dest}/{id}      marker: the batch failed and waits for a fix or a retry
  index/due/{batch_id}          what said "still needs exporting" before: moved over by `migrate_due_markers`
"""

from __future__ import annotations

import hashlib
import logging
import secrets as pyrandom
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from shared.control import batch_index, cursors, destination_activity, transitions
from shared.control.batch_state import STATES, BatchState, RecordType, StagedPartition, StateName
from shared.control.store import ControlStore, LeaseHeld, PreconditionFailed
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.logging_setup import log_event

log = logging.getLogger(__name__)

LEGACY_DUE_PREFIX = "index/due/"
FAILED_PREFIX = "index/failed/"
STATES_PREFIX = "states/"
STAGED_PREFIX = "staged/"
# A staging marker this old has lost its intake: the state is read to tell a commit whose listing markers were
# never written (the batch is due) from an intake that never committed (garbage once ORPHAN_AGE old).
STAGING_GRACE = timedelta(minutes=1)
ORPHAN_AGE = timedelta(minutes=15)


def now_utc() -> datetime:
    return datetime.now(UTC)


def state_blob(batch_id: str) -> str:
    return f"{STATES_PREFIX}{batch_id}.json"


def discard_staging(control: ControlStore, batch_id: str, marker: str) -> None:
    """Delete what an intake that never committed left behind: its staged records, then its marker."""
    control.delete_all(staged_blobs(control, batch_id))
    control.delete(marker)


def new_staging_id() -> str:
    """A name no other intake request writes under: two requests with one Idempotency-Key (the same batch id)
    and different bodies must not overwrite each other's staged records (issue 11)."""
    return pyrandom.token_hex(8)


def staged_blob(batch_id: str, staging_id: str) -> str:
    """The one blob an intake request stages its batch in: every partition's records, one after another."""
    return f"{STAGED_PREFIX}{batch_id}/{staging_id}/records.jsonl"


def discard_staged_attempt(control: ControlStore, batch_id: str, staging_id: str) -> None:
    """Delete one intake request's staged records (its state was never committed, or another request's was)."""
    control.delete_all(staged_blobs(control, batch_id, staging_id))


def staged_blobs(control: ControlStore, batch_id: str, staging_id: str | None = None) -> list[str]:
    """The staged blobs a batch has, or one intake request of it (`staging_id`), listed."""
    folder = f"{STAGED_PREFIX}{batch_id}/" + (f"{staging_id}/" if staging_id else "")
    return [item.name for item in control.list(folder)]


def failed_marker(destination_id: str, batch_id: str) -> str:
    return f"{FAILED_PREFIX}{destination_id}/{batch_id}"


def new_batch_id(moment: datetime, destination_id: str, idempotency_key: str | None) -> str:
    """Time-sortable ids; with an Idempotency-Key the id is derived from it so retries find the first batch."""
    if idempotency_key is not None:
        digest = hashlib.sha256(f"{destination_id}\n{idempotency_key}".encode()).hexdigest()
        return f"k{digest[:31]}"
    return f"b{moment.strftime('%Y%m%d%H%M%S')}{pyrandom.token_hex(9)[:17]}"


def check_batch_id(batch_id: str) -> str:
    if not (len(batch_id) == 32 and batch_id[0] in "bk" and batch_id[1:].isalnum() and batch_id.islower()):
        raise NotFound(f"batch '{batch_id[:80]}' does not exist")
    return batch_id


@dataclass(frozen=True)
class StagedPart:
    """One staged partition as intake hands it over: ``text`` is its records as they will be stored (one JSON
    record a line, each ending with a newline), uploaded and hashed as it is, never copied."""

    key: str
    text: bytes
    records: int
    columns: list[str]


@dataclass(frozen=True)
class NewBatch:
    """A validated batch, ready to stage."""

    batch_id: str
    destination_id: str
    record_type: RecordType
    parts: list[StagedPart]
    records: int
    body_sha256: str
    moment: datetime
    destination_generation: str | None = None  # the record's `generation`: only that destination exports it


def stage_batch(control: ControlStore, batch: NewBatch) -> tuple[BatchState, bool]:
    """Durably stage a batch; return (state, created). The state document is written last: it is the commit.

    Order: staging marker -> staged records -> state -> listing markers (the staging marker becomes pending).
    The staged records are one blob whatever the number of partitions (each partition a byte range of it,
    which the state records), written as blocks and one commit: a crash before that commit leaves uncommitted
    blocks, which no listing shows and the service discards; a crash after it and before the state leaves
    garbage that the export pass collects (a staging marker without a state, and the blob under the batch's
    staged/ prefix); a crash after the state leaves a complete batch, due once a pass finds its staging marker
    a minute old (`settle_staging`). A failure that raises is cleaned up at once where possible
    (`_after_failed_staging`).

    Staged records go under a staging id of this request's own, and the state names them: a concurrent
    request with the same Idempotency-Key and another body writes elsewhere, so the committed state's blob
    holds exactly the body it was committed for. The loser of that race removes its own staged records.
    """
    # Only an id derived from an Idempotency-Key can exist already: a fresh id is new by construction (and the
    # state's create-only write would still refuse a second one), so it costs no read.
    existing = control.get(state_blob(batch.batch_id)) if batch.batch_id.startswith("k") else None
    if existing is not None:
        return _replayed(BatchState.from_json(existing.data), batch.body_sha256), False
    staging_id = new_staging_id()
    try:
        return _stage_new(control, batch, staging_id)
    except Exception:
        committed = _after_failed_staging(control, batch, staging_id)
        if committed is None:
            raise
        return _replayed(committed, batch.body_sha256), batch.batch_id.startswith("b")


def _stage_new(control: ControlStore, batch: NewBatch, staging_id: str) -> tuple[BatchState, bool]:
    batch_id, destination_id, moment = batch.batch_id, batch.destination_id, batch.moment
    # The marker first: whatever a failure leaves behind, the export pass can find it and collect it.
    batch_index.mark_staging(control, batch_id, destination_id, batch.record_type, moment)
    name = staged_blob(batch_id, staging_id)
    control.put_buffers(name, [part.text for part in batch.parts])
    partitions = staged_ranges(name, batch.parts)
    total = sum(p.bytes for p in partitions)
    state = transitions.staged(
        batch_id=batch_id, destination_id=destination_id, record_type=batch.record_type, records=batch.records,
        staged_bytes=total, body_sha256=batch.body_sha256, partitions=partitions, moment=moment,
        destination_generation=batch.destination_generation,
    )
    try:
        control.put(state_blob(batch_id), state.to_json(), create_only=True, metadata=state.metadata())
    except PreconditionFailed:
        # The same Idempotency-Key raced us; the first writer's batch stands, and our staged records are garbage.
        current = control.get(state_blob(batch_id))
        assert current is not None
        winner = BatchState.from_json(current.data)
        if winner.created_at != moment:  # the same moment: the same marker name, which the winner's index owns
            _discard_attempt(control, batch, staging_id)
        else:
            discard_staged_attempt(control, batch_id, staging_id)
        return _replayed(winner, batch.body_sha256), False
    _index(control, [state], first=True)
    log_event(log, "batch staged", batch_id=batch_id, destination_id=destination_id, records=batch.records,
              bytes=total)
    return state, True


def staged_ranges(blob: str, parts: list[StagedPart]) -> list[StagedPartition]:
    """Each part's place in the staged blob that holds the parts' texts end to end, in their order."""
    partitions, offset = [], 0
    for part in parts:
        partitions.append(StagedPartition(
            key=part.key, blob=blob, records=part.records, bytes=len(part.text), columns=tuple(part.columns),
            sha256=hashlib.sha256(part.text).hexdigest(), offset=offset))
        offset += len(part.text)
    return partitions


def _after_failed_staging(control: ControlStore, batch: NewBatch, staging_id: str) -> BatchState | None:
    """Best effort after a staging write failed. Returns the state if the commit happened after all (its
    answer was lost: the listing markers are written now) or another request with the same Idempotency-Key
    committed; otherwise removes what this request staged and its marker, so the caller's error means "nothing
    was changed". Each request's staged records and marker are its own (a staging id, and its moment in the
    marker's name): a retry with the same key staging right now keeps its own. Whatever cannot be removed
    (storage still down) is a staging marker without a state: the export pass collects it once it is older
    than ORPHAN_AGE.
    """
    batch_id = batch.batch_id
    try:
        current = control.get(state_blob(batch_id))
        if current is not None:
            state = BatchState.from_json(current.data)
            if state.created_at == batch.moment:
                log_event(log, "batch staged (its commit answer was lost)", batch_id=batch_id)
                _index(control, [state], first=True)
            else:
                _discard_attempt(control, batch, staging_id)
            return state
        _discard_attempt(control, batch, staging_id)
        log_event(log, "failed intake cleaned up", logging.WARNING, batch_id=batch_id)
    except Exception as exc:
        log_event(log, "failed intake left for the export pass to collect", logging.WARNING, batch_id=batch_id,
                  error=type(exc).__name__)
    return None


def _discard_attempt(control: ControlStore, batch: NewBatch, staging_id: str) -> None:
    """Remove what one intake request staged and its staging marker: another request committed the batch (the
    same Idempotency-Key), or none did."""
    discard_staged_attempt(control, batch.batch_id, staging_id)
    control.delete(batch_index.open_marker(batch.destination_id, batch.batch_id, batch.moment))


def _replayed(state: BatchState, body_sha256: str) -> BatchState:
    if state.body_sha256 != body_sha256:
        raise Conflict(
            "this Idempotency-Key was already used for a different request body; use a new key for new data"
        )
    return state


def settle_finished(control: ControlStore, state: BatchState) -> None:
    """A finished batch found still open: the worker that finished it died before its listing markers were
    brought up to date (its open marker deleted). Bring them up to date."""
    _index(control, [state])


def settle_staging(control: ControlStore, marker: batch_index.OpenBatch, moment: datetime) -> BatchState | None:
    """A staging marker older than STAGING_GRACE: its intake died. Committed (the state exists): its listing
    markers are written now and the batch is returned, due (a marker of another request with the same
    Idempotency-Key than the one that committed just goes). Never committed: its staged records and the marker
    are deleted once ORPHAN_AGE old."""
    doc = control.get(state_blob(marker.batch_id))
    if doc is not None:
        state = BatchState.from_json(doc.data)
        if state.created_at != marker.created:  # another request with the same Idempotency-Key committed it
            control.delete(marker.marker)
            return None
        _index(control, [state])
        log_event(log, "committed batch indexed (its intake died before)", batch_id=state.batch_id)
        return state
    if marker.created is not None and moment - marker.created > ORPHAN_AGE:
        discard_staging(control, marker.batch_id, marker.marker)
        log_event(log, "orphaned intake collected", batch_id=marker.batch_id)
    return None


def migrate_due_markers(control: ControlStore, moment: datetime) -> int:
    """Move the due markers written before the open markers carried `due_at` (`index/due/{batch_id}`) over:
    an open batch's open marker is written, a finished one's listing is brought up to date, then the old marker
    goes; one without a state (an intake that never committed) goes with its staged records once ORPHAN_AGE
    old. Returns how many were moved. One listing call when there are none."""
    moved = 0
    for item in list(control.list(LEGACY_DUE_PREFIX)):
        batch_id = item.name[len(LEGACY_DUE_PREFIX):]
        doc = control.get(state_blob(batch_id))
        if doc is None:
            if item.modified is not None and moment - item.modified > ORPHAN_AGE:
                discard_staging(control, batch_id, item.name)
            continue
        state = BatchState.from_json(doc.data)
        batch_index.record(control, state)  # raises if it fails: the old marker stays until it succeeds
        control.delete(item.name)
        moved += 1
    if moved:
        log_event(log, "due markers moved to the open batch markers", moved=moved)
    return moved


def get_state(control: ControlStore, batch_id: str) -> BatchState:
    doc = control.get(state_blob(check_batch_id(batch_id)))
    if doc is None:
        raise NotFound(f"batch '{batch_id}' does not exist")
    return BatchState.from_json(doc.data)


def save_state(control: ControlStore, state: BatchState, *, lease: str | None = None,
               etag: str | None = None, previous: StateName | None = None) -> str:
    """Write a state a transition made (it stamped `updated_at`); returns the new ETag. Then the batch index
    (`previous`: the state the batch left, when the caller knows it; the index has nothing to do if unchanged)."""
    etag = put_state(control, state, lease=lease, etag=etag)
    after_saved(control, [state], previous=previous)
    return etag


def put_state(control: ControlStore, state: BatchState, *, lease: str | None = None, etag: str | None = None) -> str:
    """The state blob alone; returns its ETag. The caller brings the index and activity in step (`after_saved`),
    for several states saved at the same time at once."""
    return control.put(state_blob(state.batch_id), state.to_json(), lease=lease, etag=etag, metadata=state.metadata())


def after_saved(control: ControlStore, states: Sequence[BatchState], *, previous: StateName | None = None) -> None:
    """The batch index and the destinations' activity (a landing or an error, for their status) in step with
    states just saved, which all left `previous` (None: unknown); states saved together are indexed together."""
    _index(control, states, previous=previous)
    destination_activity.note_saved(control, states)


def _index(control: ControlStore, states: Sequence[BatchState], *, previous: StateName | None = None,
           first: bool = False) -> None:
    """The states are saved and stand; an index write that fails leaves the listing behind until the batch's
    next change, and is no reason to fail the save."""
    try:
        batch_index.record_all(control, states, previous=previous, first=first)
    except Exception as exc:
        log_event(log, "batch index not updated", logging.WARNING, batch_id=states[0].batch_id,
                  state=states[0].state, batches=len(states), error=type(exc).__name__)


def public_status(batch: BatchState) -> dict[str, Any]:
    """What GET /api/batches/{id} shows."""
    state = batch.to_json()
    return {
        "batch_id": state["batch_id"],
        "state": state["state"],
        "type": state["type"],
        "destination_id": state["destination_id"],
        "records": state["records"],
        "bytes": state["staged_bytes"],
        "output_bytes": state["output_bytes"],
        "attempts": state["attempts"],
        "total_attempts": state["total_attempts"],
        "created_at": state["created_at"],
        "updated_at": state["updated_at"],
        "started_at": state["started_at"],
        "finished_at": state["finished_at"],
        "next_attempt_at": state["next_attempt_at"] if state["state"] == "pending" else None,
        "blobs": state["blobs"],
        "manifest": state["manifest"],
        "run_id": batch.run_id,
        "last_error": state["last_error"],
        "notes": state["notes"],
        "discarded_at": state.get("discarded_at"),  # issue 17: POST /api/batches/{id}/discard
    }


def list_batches(
    control: ControlStore, *, state: str | None, destination_id: str | None, limit: int, continuation: str | None
) -> dict[str, Any]:
    """A page of batches, newest first (by creation time), with the cursor of the next page (None: the last).

    Reads the batch index (`shared.control.batch_index`): all batches' markers, or one destination's, or one
    state's, never every state. Until the index covers the states written before it existed, the states
    themselves are read (in id order, filtered on their listing metadata).
    """
    if state is not None and state not in STATES:
        raise ValidationFailed(
            f"state must be one of {', '.join(STATES)}",
            details=[{"field": "state", "message": f"must be one of {', '.join(STATES)}"}],
        )
    listing = f"batches?{urlencode({'state': state or '', 'destination_id': destination_id or ''})}"
    place = cursors.unseal(control, continuation, listing)
    if destination_id and "/" in destination_id:
        return {"batches": [], "next": None}  # no destination id has one
    if place is not None and place.after is None and place.prefix.startswith(STATES_PREFIX):
        return _states_page(control, state, destination_id, limit, place.token, listing)
    if place is None and not batch_index.is_complete(control, STATES_PREFIX):
        return _states_page(control, state, destination_id, limit, None, listing)
    return _index_page(control, state, destination_id, limit, place, listing)


def _states_page(control: ControlStore, state: str | None, destination_id: str | None, limit: int,
                 token: str | None, listing: str) -> dict[str, Any]:
    """A page read from the states themselves (in id order, filtered on their listing metadata): until the index
    covers the states written before it existed."""
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        items, token = control.list_page(STATES_PREFIX, page_size=limit - len(found), continuation=token)
        found += [listed for listed in (_listed(_state_blob_id(item.name), item.metadata) for item in items)
                  if (not destination_id or listed["destination_id"] == destination_id)
                  and (not state or listed["state"] == state)]
        if not token:
            break
    place = cursors.Place(STATES_PREFIX, token) if token else None
    return {"batches": found, "next": cursors.seal(control, place, listing)}


def _index_page(control: ControlStore, state: str | None, destination_id: str | None, limit: int,
                place: cursors.Place | None, listing: str) -> dict[str, Any]:
    """A page of the index (`batch_index.merged`): finished batches' markers merged with open ones, filtered."""
    finished = batch_index.finished_prefix(state=state, destination_id=destination_id)
    opened = None if state in {"landed", "failed"} else batch_index.open_prefix(destination_id)
    if place is not None and place.prefix != (finished or batch_index.OPEN):
        raise cursors.not_a_cursor()  # the previous version's, of a listing read elsewhere now: start again
    entries = batch_index.merged(control, finished=finished, opened=opened, page_size=limit + 1,  # one to tell more
                                 token=place.token or None if place else None, after=place.after if place else None)
    found: list[dict[str, Any]] = []
    last: tuple[str, str | None] | None = None  # the last key given out, and where to read on after it
    for key, meta, token in entries:
        listed = _listed(batch_index.batch_id_of(key), meta)
        if (destination_id and listed["destination_id"] != destination_id) or (state and listed["state"] != state):
            continue
        if len(found) == limit and last is not None:  # one more: the next page starts after the last given out
            after = cursors.Place(finished or batch_index.OPEN, last[1] or "", last[0])
            return {"batches": found, "next": cursors.seal(control, after, listing)}
        found.append(listed)
        last = key, token
    return {"batches": found, "next": None}


def _state_blob_id(name: str) -> str:
    return name[len(STATES_PREFIX):].removesuffix(".json")


def _listed(batch_id: str, meta: dict[str, str]) -> dict[str, Any]:
    return {"batch_id": batch_id, "state": meta.get("state"), "type": meta.get("type"),
            "destination_id": meta.get("destination"), "created_at": meta.get("created"),
            "status_url": f"/api/batches/{batch_id}"}


def retry_batch(control: ControlStore, batch_id: str, moment: datetime | None = None) -> BatchState:
    """POST /api/batches/{id}/retry: a failed (or waiting) batch becomes due now, with a fresh attempt budget."""
    return _make_due_now(control, batch_id, transitions.retry, reason="retry requested", moment=moment or now_utc())


def discard_batch(control: ControlStore, batch_id: str, moment: datetime | None = None) -> BatchState:
    """POST /api/batches/{id}/discard: a failed batch stops waiting for a retry (issue 17). The state first, then
    its failed marker: a crash between leaves a marker whose batch is discarded, which a retry of the
    destination's batches (new credentials, resume) skips, and a discard asked again removes."""
    doc = control.get(state_blob(check_batch_id(batch_id)))
    if doc is None:
        raise NotFound(f"batch '{batch_id}' does not exist")
    current = BatchState.from_json(doc.data)
    if current.discarded_at is not None:
        state = current  # asked again (a double click, a lost answer): the same answer, nothing changes
    else:
        state = transitions.discard(current, moment or now_utc())
        try:
            save_state(control, state, etag=doc.etag, previous=current.state)
        except (PreconditionFailed, LeaseHeld):
            raise Conflict(f"batch '{batch_id}' changed while it was being discarded; check its status") from None
    control.delete(failed_marker(state.destination_id, batch_id))
    if state is not current:
        log_event(log, "batch discarded", batch_id=batch_id, destination_id=state.destination_id,
                  error_code=state.last_error.code if state.last_error else None)
    return state


def _make_due_now(control: ControlStore, batch_id: str, transition: Callable[[BatchState, datetime], BatchState],
                  *, reason: str, moment: datetime) -> BatchState:
    doc = control.get(state_blob(check_batch_id(batch_id)))
    if doc is None:
        raise NotFound(f"batch '{batch_id}' does not exist")
    current = BatchState.from_json(doc.data)
    state = transition(current, moment)
    # The open marker before the state, as intake does: a failure between the two leaves a marker whose batch
    # is still failed (the export pass finds it finished and puts its listing right; the retry can be asked
    # again), never a pending batch that no pass will find.
    batch_index.mark_open(control, state)
    try:
        save_state(control, state, etag=doc.etag)
    except (PreconditionFailed, LeaseHeld):
        raise Conflict(f"batch '{batch_id}' changed while it was being retried; check its status") from None
    control.delete(failed_marker(state.destination_id, batch_id))
    log_event(log, "batch made due", batch_id=batch_id, destination_id=state.destination_id,
              from_state=current.state, reason=repr(reason))
    return state


def requeue_destination(control: ControlStore, destination_id: str, moment: datetime | None = None, *,
                        on_due: Callable[[str, str], object] | None = None) -> int:
    """After a destination's credentials change: its failed and backing-off batches become due now; `on_due`
    is told each (batch id, destination id) once its state says so (the export queue's nudge)."""
    when = moment or now_utc()
    count = 0
    for item in list(control.list(f"{FAILED_PREFIX}{destination_id}/")):
        batch_id = item.name.rsplit("/", 1)[1]
        try:
            _requeue(control, batch_id, when)
            count += 1
        except (Conflict, NotFound):
            control.delete(item.name) if _is_gone(control, batch_id) else None
            continue
        if on_due is not None:
            on_due(batch_id, destination_id)
    for waiting in batch_index.open_batches(control, destination_id=destination_id):
        if waiting.state == "pending" and waiting.due_at > when.timestamp():
            try:
                _requeue(control, waiting.batch_id, when)
                count += 1
            except (Conflict, NotFound):
                continue
            if on_due is not None:
                on_due(waiting.batch_id, destination_id)
    return count


def _requeue(control: ControlStore, batch_id: str, moment: datetime) -> BatchState:
    return _make_due_now(control, batch_id, transitions.requeue_for_new_credentials,
                         reason="destination credentials updated", moment=moment)


def _is_gone(control: ControlStore, batch_id: str) -> bool:
    return control.get(state_blob(batch_id)) is None
