"""The batch index: markers that answer GET /api/batches filters and drive retention without reading every state.

  index/by-destination/{dest}/{batch_id}  one per batch, metadata as the state blob's (state, destination,
                                          type, created): `?destination_id=` lists only these
  index/by-state/{state}/{batch_id}       one per batch, under its current state, same metadata: `?state=`
  index/retention/{queue}/{t}-{batch_id}  a finished batch waiting for retention, ordered by the moment `t`
                                          its clock started (`shared.control.retention` says what each does):
      staged   landed, staged records kept     (STAGED_RETENTION_HOURS after landing)
      failed   failed, staged records kept     (FAILED_RETENTION_DAYS after failing)
      state    finished, staged records gone   (STATE_RETENTION_DAYS after landing, or after the records went)
  index/backfill.json                     how far indexing the states written before the index has got;
                                          listings use the index only once it is complete

The state document stays the truth. Markers are written after it (`record`): a crash between the two leaves a
listing one change behind until the batch's next change, and retention re-reads the state before it acts.
Listing is by name, so a page costs one storage call whatever the number of other batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from shared.control.batch_state import STATES, BatchState, StateName
from shared.control.store import ControlStore

BY_DESTINATION = "index/by-destination/"
BY_STATE = "index/by-state/"
RETENTION = "index/retention/"
BACKFILL = "index/backfill.json"

RetentionQueue = Literal["staged", "failed", "state"]
_STAMP = "%Y%m%dT%H%M%S"

# The states a save can come from, by the state it goes to (shared.control.transitions): the markers to remove
# when the caller does not say which state the batch left.
_CAME_FROM: dict[str, tuple[StateName, ...]] = {
    "pending": ("running", "failed"), "running": ("pending",), "landed": ("running",),
    "failed": ("running", "pending"),
}


def destination_marker(destination_id: str, batch_id: str) -> str:
    return f"{BY_DESTINATION}{destination_id}/{batch_id}"


def state_marker(state: str, batch_id: str) -> str:
    return f"{BY_STATE}{state}/{batch_id}"


def listing_prefix(*, state: str | None, destination_id: str | None) -> str:
    """Where a filtered listing reads: a destination's markers (filtered by state on their metadata), or a
    state's."""
    if destination_id:
        return f"{BY_DESTINATION}{destination_id}/"
    return f"{BY_STATE}{state}/"


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
    metadata = state.metadata()
    control.put_bytes(state_marker(state.state, state.batch_id), b"", metadata=metadata)
    control.put_bytes(destination_marker(state.destination_id, state.batch_id), b"", metadata=metadata)
    if not first:
        for left in (previous,) if previous is not None else _CAME_FROM[state.state]:
            control.delete(state_marker(left, state.batch_id))
    queued = retention_queue(state)
    if queued is not None:
        control.put_bytes(retention_marker(queued[0], queued[1], state.batch_id), b"")


def forget(control: ControlStore, batch_id: str, destination_id: str) -> None:
    """Remove a deleted batch's listing markers (its retention markers go as retention handles them)."""
    control.delete(destination_marker(destination_id, batch_id))
    for state in STATES:
        control.delete(state_marker(state, batch_id))


def is_complete(control: ControlStore) -> bool:
    """Whether every state is indexed (states written before the index existed included)."""
    progress = control.get(BACKFILL)
    return progress is not None and progress.data.get("complete") is True
