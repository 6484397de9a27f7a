"""Every change of a batch's state, as a named function with its precondition.

    staged: pending ──start_attempt──> running ──land──> landed
              ^  ^                     │ │  ↺ record_parts; start_attempt again when a worker died mid-attempt
              │  └──────back_off───────┘ │
              │                          └──fail, give_up_after_crashes──> failed
              └─retry, requeue_for_new_credentials─┘  (from failed, or from pending)

    pending ──join_run, leave_closed_run──> pending   (coalesced runs: shared.control.runs)
    pending, failed ──fail_for_deleted_destination──> failed   (DELETE /api/destinations/{id}?force=true)
    landed, failed ──staged_records_deleted──> the same state   (retention; a retry is refused after it)
    failed ──discard──> failed, discarded   (POST /api/batches/{id}/discard; a retry undoes it)

Each function takes the current state and returns the next one; none writes to storage (the callers save
the result under their lease or ETag, and keep the due and failed markers in step). A refused transition
raises `TransitionRefused`: a 409, with words for the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.control.batch_state import BatchState, LandedFile, LastError, RecordType, StagedPartition, StateName, iso
from shared.errors import Conflict, DestinationProblem


class TransitionRefused(Conflict):
    """The batch is not in a state this transition starts from."""


def _require(state: BatchState, allowed: set[StateName], transition: str) -> None:
    if state.state not in allowed:
        raise TransitionRefused(
            f"batch '{state.batch_id}' is {state.state}: '{transition}' starts only from "
            f"{' or '.join(sorted(allowed))}"
        )


def staged(*, batch_id: str, destination_id: str, record_type: RecordType, records: int, staged_bytes: int,
           body_sha256: str, partitions: Sequence[StagedPartition], moment: datetime,
           destination_generation: str | None = None) -> BatchState:
    """A batch just staged: pending and due at once, with a full attempt budget. No precondition.
    `destination_generation`: the generation of the destination intake read (None: it has none)."""
    return BatchState(
        batch_id=batch_id, destination_id=destination_id, type=record_type, state="pending", records=records,
        staged_bytes=staged_bytes, body_sha256=body_sha256, partitions=tuple(partitions), attempts=0,
        total_attempts=0, created_at=moment, updated_at=moment, next_attempt_at=moment, started_at=None,
        finished_at=None, export_date=None, blobs=(), written_blobs=(), output_bytes=0, manifest=None,
        last_error=None, notes=(), destination_generation=destination_generation,
    )


def join_run(state: BatchState, run_id: str, moment: datetime) -> BatchState:
    """pending -> pending, a member of a coalesced run from now on (`shared.control.runs`).

    Only a pending batch in no run, or already in this one (joining again is the same change): a batch is in at
    most one run until that run is closed.
    """
    _require(state, {"pending"}, "join_run")
    if state.run_id not in (None, run_id):
        raise TransitionRefused(f"batch '{state.batch_id}' is already in run '{state.run_id}'")
    return state.changed(run_id=run_id, updated_at=moment)


def leave_closed_run(state: BatchState, moment: datetime) -> BatchState:
    """pending -> pending, out of a run that was closed without it (it failed, was retried on its own, and its
    run went on without it): the batch joins a new run."""
    _require(state, {"pending"}, "leave_closed_run")
    return state.changed(run_id=None, updated_at=moment)


def start_attempt(state: BatchState, moment: datetime) -> BatchState:
    """pending -> running, or running -> running when a worker died mid-attempt and another resumes it.

    Refused from landed and failed: a landed batch never runs again, a failed one waits for a retry.
    The first attempt fixes the export date (in the moment's own time zone, as it always has).
    """
    _require(state, {"pending", "running"}, "start_attempt")
    return state.changed(
        state="running", attempts=state.attempts + 1, total_attempts=state.total_attempts + 1, started_at=moment,
        export_date=state.export_date or moment.strftime("%Y-%m-%d"), updated_at=moment,
        crashes=state.crashes + (state.state == "running"),
    )


def crashed_too_often(state: BatchState, max_attempts: int) -> bool:
    """Whether a batch found running (its worker died mid-attempt) has used its attempt budget: taking it
    over again would only crash another worker (out of memory, a native crash), so it fails instead."""
    return state.state == "running" and state.attempts >= max_attempts


def give_up_after_crashes(state: BatchState, moment: datetime, *, max_attempts: int) -> BatchState:
    """running -> failed, when the worker of every attempt left died and `crashed_too_often` says so.

    Only from running, and only once the budget is spent (otherwise a later pass takes the batch over).
    The death just found counts as a crash; the reason says how many there were.
    """
    _require(state, {"running"}, "give_up_after_crashes")
    if not crashed_too_often(state, max_attempts):
        raise TransitionRefused(f"batch '{state.batch_id}' has used {state.attempts} of {max_attempts} attempts: "
                                "a later pass takes it over")
    crashes = state.crashes + 1
    message = (f"the export crashed the worker {crashes} times (the process died mid-export, for example out of "
               f"memory), in {state.attempts} attempts; the batch is not tried again until it is retried")
    error = _error(state, "worker_crashed", message, moment)
    return state.changed(state="failed", crashes=crashes, last_error=error, finished_at=moment,
                         next_attempt_at=None, updated_at=moment)


def record_parts(state: BatchState, names: Sequence[str], moment: datetime) -> BatchState:
    """Note parts about to be committed, so that a crash right after a commit still knows the part exists.

    Only while running. Parts all already noted leave the state as it is (the same object).
    """
    _require(state, {"running"}, "record_parts")
    new = [name for name in dict.fromkeys(names) if name not in state.written_blobs]
    if not new:
        return state
    return state.changed(written_blobs=(*state.written_blobs, *new), updated_at=moment)


def land(state: BatchState, moment: datetime, *, files: Sequence[LandedFile], output_bytes: int, manifest: str,
         kept: Sequence[str]) -> BatchState:
    """running -> landed: every file and then the manifest are in the destination.

    Refused from any other state: in particular a failed batch lands only through a retry and a new attempt.
    `kept` are stale parts of an earlier attempt the credentials could not delete; a note names them.
    """
    _require(state, {"running"}, "land")
    notes = state.notes
    if kept:
        notes = (*notes, f"{len(kept)} part(s) from an earlier attempt could not be deleted (the credentials lack "
                         f"delete permission): {', '.join(kept[:10])}; the manifest lists exactly the valid files")
    return state.changed(
        state="landed", finished_at=moment, blobs=tuple(files), output_bytes=output_bytes, manifest=manifest,
        last_error=None, written_blobs=(), next_attempt_at=None, notes=notes, updated_at=moment,
    )


def may_back_off(state: BatchState, problem: DestinationProblem, max_attempts: int) -> bool:
    """Whether a failed attempt waits and tries again: the problem may pass, and attempts are left."""
    return problem.retryable and state.attempts < max_attempts


def back_off(state: BatchState, problem: DestinationProblem, moment: datetime, *, due: datetime,
             max_attempts: int) -> BatchState:
    """running -> pending until `due`, keeping the attempt's error for the status. Refused unless running
    and `may_back_off` (a problem waiting cannot fix, or no attempts left: that is `fail`)."""
    _require(state, {"running"}, "back_off")
    if not may_back_off(state, problem, max_attempts):
        raise TransitionRefused(
            f"batch '{state.batch_id}' cannot back off: its problem ({problem.code}) is not one waiting fixes, or "
            f"its {state.attempts} attempt(s) used all {max_attempts}"
        )
    error = _error(state, problem.code, problem.message, moment)
    return state.changed(state="pending", next_attempt_at=due, last_error=error, updated_at=moment)


def fail(state: BatchState, problem: DestinationProblem, moment: datetime) -> BatchState:
    """running -> failed, visible with its reason until a retry (or new credentials) makes it pending.

    Only from running. A problem that waiting could have fixed failed for lack of attempts: the message
    says so.
    """
    _require(state, {"running"}, "fail")
    message = f"gave up after {state.attempts} attempts: {problem.message}" if problem.retryable else problem.message
    return state.changed(state="failed", last_error=_error(state, problem.code, message, moment), finished_at=moment,
                         next_attempt_at=None, updated_at=moment)


def fail_poisoned(state: BatchState, problem: DestinationProblem, moment: datetime) -> BatchState:
    """pending or running -> failed, when the queue gave up on the batch's message: handling it crashed the
    consumer `maxDequeueCount` times (shared.export.queued). Visible with the reason until a retry."""
    _require(state, {"pending", "running"}, "fail_poisoned")
    return state.changed(state="failed", last_error=_error(state, problem.code, problem.message, moment),
                         finished_at=moment, next_attempt_at=None, updated_at=moment)


def _error(state: BatchState, code: str, message: str, moment: datetime) -> LastError:
    return LastError(code=code, message=message, at=moment, attempt=state.attempts)


def retry(state: BatchState, moment: datetime) -> BatchState:
    """failed or pending -> pending, due now, with a fresh attempt budget (POST /api/batches/{id}/retry).

    Refused for a landed batch (nothing to retry) and a running one (its worker records the outcome).
    """
    if state.state == "landed":
        raise TransitionRefused(f"batch '{state.batch_id}' has already landed; there is nothing to retry")
    if state.state == "running":
        raise TransitionRefused(f"batch '{state.batch_id}' is being exported right now; check its status shortly")
    if state.staged_deleted_at is not None:
        raise TransitionRefused(f"batch '{state.batch_id}' can no longer be retried: its staged records were deleted "
                                f"on {state.staged_deleted_at:%Y-%m-%d}; send its records again as a new batch")
    return state.changed(state="pending", attempts=0, crashes=0, next_attempt_at=moment, updated_at=moment,
                         discarded_at=None)


def discard(state: BatchState, moment: datetime) -> BatchState:
    """failed -> failed, discarded by an operator: no longer waiting for a retry or new credentials (its failed
    marker goes), kept for the record with a note. Only a failed batch, and only once; an explicit retry
    still exports it while its staged records are kept."""
    _require(state, {"failed"}, "discard")
    if state.discarded_at is not None:
        raise TransitionRefused(f"batch '{state.batch_id}' was already discarded on {iso(state.discarded_at)}")
    notes = (*state.notes, f"discarded by an operator on {iso(moment)}: it is not exported unless it is retried")
    return state.changed(discarded_at=moment, notes=notes, updated_at=moment)


def requeue_for_new_credentials(state: BatchState, moment: datetime) -> BatchState:
    """After the destination's credentials change, a batch that failed or is backing off is due now, with a
    fresh attempt budget: the same change and the same preconditions as `retry`, asked for by the save. A
    batch an operator discarded stays discarded: only a retry asked for it brings it back."""
    if state.discarded_at is not None:
        raise TransitionRefused(f"batch '{state.batch_id}' was discarded; retry it to export it after all")
    return retry(state, moment)


def staged_records_deleted(state: BatchState, moment: datetime, *, after_days: float | None = None) -> BatchState:
    """landed -> landed, or failed -> failed, noting that retention deleted the staged records.

    Only once, and only for a finished batch: a pending or running batch still needs its records. For a failed
    batch (`after_days`, FAILED_RETENTION_DAYS) the note says why it can no longer be retried.
    """
    _require(state, {"landed", "failed"}, "staged_records_deleted")
    if state.staged_deleted_at is not None:
        raise TransitionRefused(f"batch '{state.batch_id}': its staged records were already deleted")
    notes = state.notes
    if state.state == "failed":
        notes = (*notes, f"its staged records were deleted after {after_days:g} days failed (FAILED_RETENTION_DAYS); "
                         "it can no longer be retried: send its records again as a new batch")
    return state.changed(staged_deleted_at=moment, notes=notes, updated_at=moment)


DESTINATION_DELETED = "destination deleted"


def fail_for_deleted_destination(state: BatchState, moment: datetime) -> BatchState:
    """pending or failed -> failed with the reason "destination deleted", its staged records gone
    (DELETE /api/destinations/{id}?force=true deletes them next).

    Refused for a running batch (its worker holds the lease and records its outcome) and a landed one.
    """
    _require(state, {"pending", "failed"}, "fail_for_deleted_destination")
    error = _error(state, "destination_deleted", DESTINATION_DELETED, moment)
    return state.changed(state="failed", last_error=error, finished_at=moment, next_attempt_at=None,
                         staged_deleted_at=moment, updated_at=moment)
