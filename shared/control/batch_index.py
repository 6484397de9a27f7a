"""The batch index: markers that answer GET /api/batches, newest first, and drive retention without reading
every state.

  index/batches/all/{newest}                  one per batch once it has finished, metadata as the state blob's
                                              (state, destination, type, created): the unfiltered listing reads
                                              these merged with the open batches' state markers (`every_batch`)
  index/batches/destination/{dest}/{newest}   one per batch: `?destination_id=` lists only these
  index/batches/state/{state}/{newest}        one per batch, under its current state: `?state=`; a running
                                              batch stays under pending, its metadata saying running

`state/pending/` is also what the export finds due batches by (`open_batches`): an open batch's marker there
carries `due_at` (when it is due: its next attempt's time, or when its attempt started while it runs) and `bytes`
(what it staged: the pass sizes its work by it before claiming any, `shared.export.lanes`), and intake
writes it first, before the staged records, with the state `staging` (`mark_staging`), so that an intake which
never commits leaves a marker to collect its garbage by (`shared.control.batches.settle_staging`). Listings skip
`staging` markers. Before this, a second marker per batch, `index/due/{batch_id}`, said the same: one more write
at intake and one more delete when the batch finished (the most expensive request of a small batch on Azurite);
`shared.control.batches.migrate_due_markers` moves those still in storage over.

An open batch has no `all` marker of its own: intake writes none (one write of the eight a small POST made), nor
does a batch that waits again (a retry, a backoff). The unfiltered listing reads the open batches' state markers
with the `all` markers, newest first, and an open batch's state marker wins over an `all` marker left from
before (a failed batch retried, or written before this). The `all` marker is written when the batch finishes.

A batch that starts running keeps its `destination` marker as it was (pending): its state marker
stays under `state/pending/` and is written again with metadata that says running. So `state/pending/` holds
every open batch, each with its exact state; `?state=pending` and `?state=running` read it and filter, and a
listing of the other markers reads it once (as many as are open) to show the running ones as running. An
attempt costs one small write to the index and no delete, where it cost two writes and a delete (three of
about twenty storage requests for a small batch; on Azurite a delete costs the CPU of five writes and grows
with the number of blobs in the account). Markers under `state/running/` are written no more, and those written
before are read by nothing (`forget` removes them with their batch).
  index/retention/{queue}/{t}-{batch_id}      a finished batch waiting for retention, ordered by the moment `t`
                                              its clock started (`shared.control.retention` says what each does):
      staged   landed, staged records kept     (STAGED_RETENTION_HOURS after landing)
      failed   failed, staged records kept     (FAILED_RETENTION_DAYS after failing)
      state    finished, staged records gone   (STATE_RETENTION_DAYS after landing, or after the records went)
  index/batches/backfill.json                 how far indexing the states written before this index has got;
                                              listings use the index only once it is complete

`{newest}` is `{key}-{batch_id}`, the key the creation time counted down (`newest_first_key`): storage lists
names in ascending order, so a listing reads the newest batch first, whatever its id (an id derived from an
Idempotency-Key does not sort by time).

The state document stays the truth. Markers are written after it (`record`): a crash between the two leaves a
listing one change behind until the batch's next change, and retention re-reads the state before it acts.
Listing is by name, so a page costs one storage call whatever the number of other batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.control.batch_state import STATES, BatchState, RecordType, StateName, iso
from shared.control.store import ControlStore, Listed
from shared.logging_setup import log_event

BATCHES = "index/batches/"
ALL = f"{BATCHES}all/"
BY_DESTINATION = f"{BATCHES}destination/"
BY_STATE = f"{BATCHES}state/"
RETENTION = "index/retention/"
BACKFILL = f"{BATCHES}backfill.json"
# What the index kept before it listed newest first (oldest id first, keyed batches out of order): deleted by
# the backfill once the new markers are complete.
FORMER = ("index/by-destination/", "index/by-state/", "index/backfill.json")

OPEN = f"{BY_STATE}pending/"  # every open batch's state marker, and intake's staging markers (module doc)
STAGING = "staging"  # a state marker's state while its intake has not committed
RetentionQueue = Literal["staged", "failed", "state"]
LISTING_BACKFILL_STATES = 500
_STAMP = "%Y%m%dT%H%M%S"
_KEY_DIGITS = 17
_LAST_MICROSECOND = 10**_KEY_DIGITS - 1  # year 5138: the key of every creation time before it is positive
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The states a save can come from, by the state it goes to (shared.control.transitions): the markers to remove
# when the caller does not say which state the batch left. Those of `running` are under pending (module doc),
# or under running when written before that.
log = logging.getLogger(__name__)

_CAME_FROM: dict[str, tuple[StateName, ...]] = {
    "pending": ("running", "failed"), "running": ("pending",), "landed": ("running",),
    "failed": ("running", "pending"),
}


def newest_first_key(created: datetime, batch_id: str) -> str:
    """A marker's last name part: the creation time counted down in microseconds, then the id (two batches of
    the same microsecond stay apart)."""
    microseconds = (created - _EPOCH) // timedelta(microseconds=1)
    return f"{_LAST_MICROSECOND - microseconds:0{_KEY_DIGITS}d}-{batch_id}"


def batch_id_of(marker: str) -> str:
    """The batch id at the end of a listing marker's name."""
    return marker.rsplit("-", 1)[1]


def marked_under(state: str) -> str:
    """The folder of `state/` a batch in `state` has its state marker in: an open batch's is under pending."""
    return "pending" if state == "running" else state


def markers(batch_id: str, destination_id: str, state: str, created: datetime) -> tuple[str, str, str]:
    """A batch's listing markers while in `state`: all, its destination's, its state's."""
    key = newest_first_key(created, batch_id)
    return f"{ALL}{key}", f"{BY_DESTINATION}{destination_id}/{key}", f"{BY_STATE}{marked_under(state)}/{key}"


def open_marker(batch_id: str, created: datetime) -> str:
    """The name of a batch's marker under `state/pending/` (staging, pending or running)."""
    return f"{OPEN}{newest_first_key(created, batch_id)}"


def marker_metadata(state: BatchState) -> dict[str, str]:
    """What a batch's markers carry: its state blob's metadata, and while it is open when it is due and what it
    staged (the export pass sizes its work by it before claiming any: `shared.export.lanes`)."""
    metadata = state.metadata()
    if not state.finished:
        due = state.next_attempt_at if state.state == "pending" and state.next_attempt_at else state.updated_at
        metadata["due_at"] = f"{due.timestamp():.3f}"
        metadata["bytes"] = str(state.staged_bytes)
    return metadata


def mark_staging(control: ControlStore, batch_id: str, destination_id: str, record_type: RecordType,
                 created: datetime) -> None:
    """Intake's first write, before its staged records (module doc): the batch's open marker, saying staging."""
    control.put_bytes(open_marker(batch_id, created), b"", metadata={
        "state": STAGING, "destination": destination_id, "type": record_type, "created": iso(created),
        "due_at": f"{created.timestamp():.3f}"})


def mark_open(control: ControlStore, state: BatchState) -> None:
    """Write an open batch's marker under `state/pending/` on its own (before the state it describes is saved)."""
    control.put_bytes(open_marker(state.batch_id, state.created_at), b"", metadata=marker_metadata(state))


@dataclass(frozen=True)
class OpenBatch:
    """A marker under `state/pending/`: a batch staging, pending (due from `due_at`) or running."""

    batch_id: str
    destination_id: str
    state: str
    due_at: float
    created: datetime | None
    marker: str
    staged_bytes: int | None = None  # None: a marker written before markers said
    record_type: str | None = None

    @property
    def staging(self) -> bool:
        return self.state == STAGING


def open_batches(control: ControlStore, *, destination_id: str | None = None) -> list[OpenBatch]:
    """Every open batch (one listing call per 5,000), or one destination's, from their markers."""
    found = []
    for item in control.list(OPEN, with_metadata=True):
        meta = item.metadata
        if destination_id is not None and meta.get("destination") != destination_id:
            continue
        try:
            created: datetime | None = datetime.fromisoformat(meta.get("created", ""))
        except ValueError:
            created = item.modified  # a marker indexed from a state that did not say
        found.append(OpenBatch(batch_id_of(item.name), meta.get("destination", ""), meta.get("state", ""),
                               float(meta.get("due_at") or 0), created, item.name, staged_bytes(meta),
                               meta.get("type")))
    return found


def staged_bytes(metadata: dict[str, str]) -> int | None:
    """What an open batch staged, as its marker says (None: written before markers said)."""
    size = metadata.get("bytes", "")
    return int(size) if size.isdigit() else None


def listing_prefix(*, state: str | None, destination_id: str | None) -> str:
    """Where a listing reads: a destination's markers (filtered by state on their metadata), a state's, or all."""
    if destination_id:
        return f"{BY_DESTINATION}{destination_id}/"
    if state:
        return f"{BY_STATE}{marked_under(state)}/"
    return ALL


def retention_marker(queue: RetentionQueue, started: datetime, batch_id: str) -> str:
    return f"{RETENTION}{queue}/{started.astimezone(UTC).strftime(_STAMP)}-{batch_id}"


def retention_prefix(queue: RetentionQueue) -> str:
    return f"{RETENTION}{queue}/"


def parse_retention_marker(name: str) -> tuple[datetime, str]:
    """(the moment the retention clock started, the batch id) of a retention marker's name."""
    stamp, batch_id = name.rsplit("/", 1)[1].split("-", 1)
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC), batch_id


def retention_queue(state: BatchState) -> tuple[RetentionQueue, datetime] | None:
    """The queue a just-finished batch waits in, and when its clock started; None while it is not finished."""
    if not state.finished or state.finished_at is None:
        return None
    if state.staged_deleted_at is not None:
        return "state", state.finished_at if state.state == "landed" else state.staged_deleted_at
    return ("staged" if state.state == "landed" else "failed"), state.finished_at


def record(control: ControlStore, state: BatchState, *, previous: StateName | None = None,
           first: bool = False) -> None:
    """Bring the index in step with a state just saved. `previous`: the state it left (None: unknown, so every
    state it may have come from is cleared); nothing to do when it stayed in the same state. `first`: just
    staged, nothing to clear."""
    if previous == state.state:
        return
    metadata = marker_metadata(state)
    every = markers(state.batch_id, state.destination_id, state.state, state.created_at)
    # Open: no `all` marker, and while running the state marker only (module doc).
    moved = every if state.finished else every[2:] if state.state == "running" else every[1:]
    writes: list[tuple[str, dict[str, str] | None]] = [(marker, metadata) for marker in moved]
    queued = retention_queue(state)
    if queued is not None:
        writes.append((retention_marker(queued[0], queued[1], state.batch_id), None))
    control.put_markers(writes)  # at once: one round trip's wait, not four
    if not first:  # once the new markers stand: a failure between leaves the batch listed twice, never missing
        key = newest_first_key(state.created_at, state.batch_id)
        came_from = (previous,) if previous is not None else _CAME_FROM[state.state]
        left = {marked_under(name) for name in came_from} - {marked_under(state.state)}
        control.delete_all(f"{BY_STATE}{name}/{key}" for name in sorted(left))


def every_batch(control: ControlStore, *, token: str | None, after: str | None,
                page_size: int) -> Iterator[tuple[str, dict[str, str], str | None]]:
    """Every batch, newest first: the `all` markers merged with the open batches' state markers (module doc).
    Yields (its key, its listing metadata, where to read on after it): storage's token for the page of `all`
    markers the merge is in (None: the first page), read again from the key on (`after`: the last key given
    out; what a page gave out before it is skipped)."""
    opened = [(item.name[len(OPEN):], item.metadata) for item in control.list(OPEN, with_metadata=True)
              if item.metadata.get("state") != STAGING and (after is None or item.name[len(OPEN):] > after)]
    at = 0
    while True:
        page, following = control.list_page(ALL, page_size=page_size, continuation=token)
        for item in page:
            key = item.name[len(ALL):]
            if after is not None and key <= after:
                continue
            while at < len(opened) and opened[at][0] < key:
                yield (*opened[at], token)
                at += 1
            if at < len(opened) and opened[at][0] == key:  # open again, or finishing now: its state marker
                yield (*opened[at], token)
                at += 1
            else:
                yield key, item.metadata, token
        if following is None:
            break
        token = following
    for key, metadata in opened[at:]:
        yield key, metadata, token


def running_ids(control: ControlStore) -> set[str]:
    """The ids of the running batches (their destination markers still say pending): one listing of the open
    batches' state markers."""
    return {batch_id_of(item.name) for item in control.list(f"{BY_STATE}pending/", with_metadata=True)
            if item.metadata.get("state") == "running"}


def listed_state(marked: str | None, batch_id: str, running: set[str]) -> str | None:
    """A batch's state as a listing shows it: its marker's, unless its state marker says it is running now."""
    return "running" if batch_id in running and marked not in {"landed", "failed"} else marked


def forget(control: ControlStore, state: BatchState) -> None:
    """Remove a deleted batch's listing markers (its retention markers go as retention handles them)."""
    key = newest_first_key(state.created_at, state.batch_id)
    control.delete(f"{ALL}{key}")
    control.delete(f"{BY_DESTINATION}{state.destination_id}/{key}")
    for name in STATES:
        control.delete(f"{BY_STATE}{name}/{key}")


def is_complete(control: ControlStore, states_prefix: str) -> bool:
    """Whether every state is indexed (states written before the index existed included). A listing that finds
    it incomplete indexes up to LISTING_BACKFILL_STATES states itself first: a fresh deployment's few states at
    once (its first listing is newest first too), a large backlog over the timer's runs."""
    progress = control.get(BACKFILL)
    if progress is not None and progress.data.get("complete") is True:
        return True
    return backfill(control, states_prefix, max_states=LISTING_BACKFILL_STATES)[1]


def backfill(control: ControlStore, states_prefix: str, *, max_states: int) -> tuple[int, bool]:
    """Index up to `max_states` states written before the index existed; returns (indexed, complete).

    Reads the states' listing only (its metadata is what the markers carry). A finished one enters the
    retention queue with its blob's last write as its clock (a landed or failed state is last written then).
    Once complete, what the former index kept is deleted, up to `max_states` blobs a run.
    """
    progress = control.get(BACKFILL)
    if progress is not None and progress.data.get("complete") is True:
        if not progress.data.get("former_deleted") and _delete_former_index(control, max_states):
            control.put(BACKFILL, {**progress.data, "former_deleted": True})
        return 0, True
    token = progress.data.get("next") if progress is not None else None
    items, token = control.list_page(states_prefix, page_size=max_states, continuation=token)
    for item in items:
        _index_listed(control, item, states_prefix)
    done = (progress.data.get("indexed", 0) if progress is not None else 0) + len(items)
    control.put(BACKFILL, {"complete": token is None, "next": token, "indexed": done})
    if token is None:
        log_event(log, "batch index complete", states=done)
    return len(items), token is None


def _delete_former_index(control: ControlStore, limit: int) -> bool:
    """Delete up to `limit` blobs of the former index; True once none is left."""
    for prefix in FORMER:
        items, more = control.list_page(prefix, page_size=limit, continuation=None)
        for item in items:
            control.delete(item.name)
        limit -= len(items)
        if more or limit <= 0:
            return False
    return True


def _index_listed(control: ControlStore, item: Listed, states_prefix: str) -> None:
    meta = item.metadata
    batch_id = item.name[len(states_prefix):].removesuffix(".json")
    state, destination_id = meta.get("state", ""), meta.get("destination", "")
    if not (state and destination_id):
        return
    try:
        created = datetime.fromisoformat(meta.get("created", ""))
    except ValueError:
        created = item.modified or datetime.now(UTC)  # a state from before listing metadata had its creation time
    for marker in markers(batch_id, destination_id, state, created):
        control.put_bytes(marker, b"", metadata=meta)
    if state in {"landed", "failed"} and item.modified is not None:
        queue: RetentionQueue = "staged" if state == "landed" else "failed"
        control.put_bytes(retention_marker(queue, item.modified, batch_id), b"")
