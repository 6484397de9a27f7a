"""The batch index: markers that answer GET /api/batches, newest first, find the open batches (the export's due
batches among them) without reading every state, and drive retention.

  index/batches/open/{dest}/{newest}          one per open batch (staging, pending or running), in its
                                              destination's folder, metadata as the state blob's and more (below)
  index/batches/all/{newest}                  one per finished batch, metadata as the state blob's (state,
                                              destination, type, created)
  index/batches/destination/{dest}/{newest}   one per finished batch, in its destination's folder
  index/batches/state/failed/{newest}         one per failed batch: `?state=failed` reads these (`?state=landed`
                                              reads `all`, mostly landed batches, and filters)

An open batch has one marker, its open marker, and nothing else in the index: intake writes it first, before the
staged records, saying `staging` (`mark_staging`), so that an intake which never commits leaves a marker to collect
its garbage by (`shared.control.batches.settle_staging`); the commit makes it pending; an attempt that starts makes
it say running; the batch's finish deletes it and writes the listing markers (two once landed, three once failed).
A coalesced run's members finish together (`record_all`): their markers are written at once and their open
markers deleted in one Blob Batch request per 256.
Its metadata carries `due_at` (when it is due: its next attempt's time, or when its attempt started while it runs)
and `bytes` (what it staged: the pass sizes its work by it before claiming any, `shared.export.lanes`).

So a small batch's intake writes two markers (the open marker, twice) where it wrote five (a staging marker, then
`all`, `destination` and `state/pending` markers), the index of a waiting batch (a retry, a backoff) is one write,
and a landing writes two listing markers where it wrote three (markers under `state/landed/` are written no more;
nothing reads those written before, and retention deletes them with their batch). The export finds due batches by
listing `open/` (every destination's, `open_batches`); a destination's open batches are one listing of its folder
(its status, its queue messages, deleting it), not a filter over every open batch. Listings merge:
`?destination_id=` reads the destination's finished markers and its open markers, the unfiltered listing `all` and
every open marker, `?state=pending` and `?state=running` the open markers alone (`merged`); an open marker wins over
a finished batch's markers left from before it was retried. Listings skip `staging` markers. Open markers used to
sit in `state/pending/{newest}`, beside `all`, `destination` and `state` markers written for every batch at intake;
`migrate_open_markers` moves those still there. Before that, a second marker per batch, `index/due/{batch_id}`, said
when it was due (`shared.control.batches.migrate_due_markers`).
  index/retention/{queue}/{t}-{batch_id}      a finished batch waiting for retention, ordered by the moment `t`
                                              its clock started (`shared.control.retention` says what each does):
      staged   landed, staged records kept     (STAGED_RETENTION_HOURS after landing)
      failed   failed, staged records kept     (FAILED_RETENTION_DAYS after failing)
      state    finished, staged records gone   (STATE_RETENTION_DAYS after landing, or after the records went)
      runs     a coalesced run landed or failed (its document; `shared.control.runs`), named by the run's id
  index/batches/backfill.json                 how far indexing the states written before this index has got;
                                              listings use the index only once it is complete

`{newest}` is `{key}-{batch_id}`, the key the creation time counted down (`newest_first_key`): storage lists
names in ascending order, so a listing reads the newest batch first, whatever its id (an id derived from an
Idempotency-Key does not sort by time).

The state document stays the truth. Markers are written after it (`record`): a crash between the two leaves a
listing one change behind until the batch's next change, and retention re-reads the state before it acts.
A page of finished batches costs one storage call whatever the number of other batches; the open markers it
merges with are read whole (one call per 5,000).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
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

OPEN = f"{BATCHES}open/"  # every open batch's marker, in its destination's folder (module doc)
LEGACY_OPEN = f"{BY_STATE}pending/"  # where open markers were written before (`migrate_open_markers`)
OPEN_STATES = ("pending", "running")
STAGING = "staging"  # an open marker's state while its intake has not committed
RetentionQueue = Literal["staged", "failed", "state", "runs"]
LISTING_BACKFILL_STATES = 500
_STAMP = "%Y%m%dT%H%M%S"
_KEY_DIGITS = 17
_LAST_MICROSECOND = 10**_KEY_DIGITS - 1  # year 5138: the key of every creation time before it is positive
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The states a save can come from, by the state it goes to (shared.control.transitions): the markers to remove
# when the caller does not say which state the batch left.
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


def leaf(name: str) -> str:
    """A marker's last name part, `{newest}`."""
    return name.rsplit("/", 1)[1]


def state_marker(destination_id: str, state: str, key: str) -> str | None:
    """A batch's marker that says its state: its open marker while open, its `state/failed/` one once failed;
    a landed batch has none (its `all` and destination markers say it)."""
    if state in OPEN_STATES:
        return f"{OPEN}{destination_id}/{key}"
    return f"{BY_STATE}{state}/{key}" if state == "failed" else None


def markers(batch_id: str, destination_id: str, state: str, created: datetime) -> tuple[str, ...]:
    """A batch's index markers while in `state`: an open batch's open marker alone; a finished one's `all` and
    destination markers, and a failed one's `state/failed/` marker."""
    key = newest_first_key(created, batch_id)
    if state in OPEN_STATES:
        return (f"{OPEN}{destination_id}/{key}",)
    own = state_marker(destination_id, state, key)
    return (f"{ALL}{key}", f"{BY_DESTINATION}{destination_id}/{key}", *((own,) if own else ()))


def open_marker(destination_id: str, batch_id: str, created: datetime) -> str:
    """The name of a batch's open marker (staging, pending or running)."""
    return f"{OPEN}{destination_id}/{newest_first_key(created, batch_id)}"


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
    control.put_bytes(open_marker(destination_id, batch_id, created), b"", metadata={
        "state": STAGING, "destination": destination_id, "type": record_type, "created": iso(created),
        "due_at": f"{created.timestamp():.3f}"})


def mark_open(control: ControlStore, state: BatchState) -> None:
    """Write an open batch's marker on its own (before the state it describes is saved)."""
    control.put_bytes(open_marker(state.destination_id, state.batch_id, state.created_at), b"",
                      metadata=marker_metadata(state))


@dataclass(frozen=True)
class OpenBatch:
    """An open marker: a batch staging, pending (due from `due_at`) or running."""

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


def open_prefix(destination_id: str | None) -> str:
    """Where the open markers of every destination, or of one, are listed."""
    return f"{OPEN}{destination_id}/" if destination_id else OPEN


def open_batches(control: ControlStore, *, destination_id: str | None = None) -> list[OpenBatch]:
    """Every open batch (one listing call per 5,000), or one destination's (a listing of its folder only), from
    their markers."""
    return [_open_batch(item) for item in control.list(open_prefix(destination_id), with_metadata=True)]


def open_batches_newer(control: ControlStore, destination_id: str, created: datetime,
                       batch_id: str) -> list[OpenBatch]:
    """A destination's open batches created after the given one, newest first: its folder read down to that
    batch's marker, no further."""
    stop = open_marker(destination_id, batch_id, created)
    found = []
    for item in control.list(open_prefix(destination_id), with_metadata=True):
        if item.name >= stop:
            break
        found.append(_open_batch(item))
    return found


def _open_batch(item: Listed) -> OpenBatch:
    meta = item.metadata
    try:
        created: datetime | None = datetime.fromisoformat(meta.get("created", ""))
    except ValueError:
        created = item.modified  # a marker indexed from a state that did not say
    return OpenBatch(batch_id_of(item.name), meta.get("destination", ""), meta.get("state", ""),
                     float(meta.get("due_at") or 0), created, item.name, staged_bytes(meta), meta.get("type"))


def staged_bytes(metadata: dict[str, str]) -> int | None:
    """What an open batch staged, as its marker says (None: written before markers said)."""
    size = metadata.get("bytes", "")
    return int(size) if size.isdigit() else None


def finished_prefix(*, state: str | None, destination_id: str | None) -> str | None:
    """Where a listing reads finished batches' markers: a destination's (filtered by state on their metadata), a
    finished state's, or all; None when the state asked for is an open one (the open markers say it)."""
    if state in OPEN_STATES:
        return None
    if destination_id:
        return f"{BY_DESTINATION}{destination_id}/"
    return f"{BY_STATE}{state}/" if state == "failed" else ALL  # landed: most of `all`, filtered


def migrate_open_markers(control: ControlStore) -> int:
    """Move the open markers written before they went in their destination's folder (`state/pending/{newest}`);
    returns how many were moved. One listing call when there are none. A batch that finishes while its marker
    is moved may find it moved after it was deleted: the pass finds that marker's batch finished, and settles it
    (`shared.control.batches.settle_finished`)."""
    moved = 0
    for item in list(control.list(LEGACY_OPEN, with_metadata=True)):
        destination_id = item.metadata.get("destination")
        if not destination_id:  # never written without one; left as it is rather than lost
            continue
        control.put_bytes(f"{OPEN}{destination_id}/{leaf(item.name)}", b"", metadata=item.metadata)
        control.delete(item.name)
        moved += 1
    if moved:
        log_event(log, "open markers moved to their destination's folder", moved=moved)
    return moved


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
    record_all(control, [state], previous=previous, first=first)


def record_all(control: ControlStore, states: Sequence[BatchState], *, previous: StateName | None = None,
               first: bool = False) -> None:
    """`record` for states saved together (a run's members landing): their new markers at once, then the
    markers they left in one request (`ControlStore.delete_all`)."""
    changed = [state for state in states if state.state != previous]
    writes: list[tuple[str, dict[str, str] | None]] = []
    left: set[str] = set()
    for state in changed:
        moved = markers(state.batch_id, state.destination_id, state.state, state.created_at)
        metadata = marker_metadata(state)
        writes.extend((marker, metadata) for marker in moved)
        queued = retention_queue(state)
        if queued is not None:
            writes.append((retention_marker(queued[0], queued[1], state.batch_id), None))
        if not first:
            key = newest_first_key(state.created_at, state.batch_id)
            came_from = (previous,) if previous is not None else _CAME_FROM[state.state]
            left |= {marker for name in came_from if (marker := state_marker(state.destination_id, name, key))
                     } - set(moved)
    control.put_markers(writes)  # at once: one round trip's wait, not four
    # once the new markers stand: a failure between leaves the batch listed twice, never missing
    control.delete_all(sorted(left))


def merged(control: ControlStore, *, finished: str | None, opened: str | None, token: str | None,
           after: str | None, page_size: int) -> Iterator[tuple[str, dict[str, str], str | None]]:
    """Batches newest first: the finished batches' markers under `finished` merged with the open markers under
    `opened` (either None: none), staging ones left out (module doc). Yields (its key, its listing metadata,
    where to read on after it): storage's token for the page of finished markers the merge is in (None: the
    first page), read again from the key on (`after`: the last key given out; what was given out is skipped)."""
    listed = control.list(opened, with_metadata=True) if opened is not None else iter(())
    open_ones = sorted((leaf(item.name), item.metadata) for item in listed
                       if item.metadata.get("state") != STAGING and (after is None or leaf(item.name) > after))
    at = 0
    while finished is not None:
        page, following = control.list_page(finished, page_size=page_size, continuation=token)
        for item in page:
            key = leaf(item.name)
            if after is not None and key <= after:
                continue
            while at < len(open_ones) and open_ones[at][0] < key:
                yield (*open_ones[at], token)
                at += 1
            if at < len(open_ones) and open_ones[at][0] == key:  # open again, or finishing now: its open marker
                yield (*open_ones[at], token)
                at += 1
            else:
                yield key, item.metadata, token
        if following is None:
            break
        token = following
    for key, metadata in open_ones[at:]:
        yield key, metadata, token


def every_marker(state: BatchState) -> list[str]:
    """Every listing marker a batch may have (to delete with its state; its retention markers go as retention
    handles them): those of each state it may have been in, as written now and before (module doc)."""
    key = newest_first_key(state.created_at, state.batch_id)
    return [f"{ALL}{key}", f"{BY_DESTINATION}{state.destination_id}/{key}",
            open_marker(state.destination_id, state.batch_id, state.created_at),
            *(f"{BY_STATE}{name}/{key}" for name in STATES)]


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
