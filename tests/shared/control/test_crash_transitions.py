"""Transitions and document shapes added by issue 11: crashes counted as attempts, staged blobs named per
request with their SHA-256. The fixtures (see fixtures/README.md) were written by that code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from shared.control import transitions
from shared.control.transitions import TransitionRefused
from tests.shared.control.test_transitions import fixture, stored, written

MOMENT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_a_staged_document_names_blobs_under_its_own_staging_id_with_their_sha256() -> None:
    state = fixture("pending_staged_with_staging_ids")
    [staging_id] = {p.blob.split("/")[2] for p in state.partitions}
    assert all(p.blob.startswith(f"staged/{state.batch_id}/{staging_id}/") for p in state.partitions)
    assert all(p.sha256 is not None and len(p.sha256) == 64 for p in state.partitions)
    assert "crashes" not in orjson.loads(stored("pending_staged_with_staging_ids"))  # written only once set


def test_a_takeover_counts_the_dead_workers_attempt_as_a_crash() -> None:
    after = fixture("running_taken_over_after_a_crash")
    assert after.started_at is not None
    # The capture started the first attempt 5 s after staging; its worker died; a pass took it over.
    staged = fixture("pending_staged_with_staging_ids")
    first = transitions.start_attempt(staged, after.created_at + timedelta(seconds=5))
    assert first.crashes == 0  # from pending: nobody died
    state = transitions.start_attempt(first, after.started_at)
    assert (state.attempts, state.total_attempts, state.crashes) == (2, 2, 1)
    assert written(state) == stored("running_taken_over_after_a_crash")


def test_give_up_after_crashes_fails_with_the_number_of_crashes_as_the_code_wrote_it() -> None:
    after = fixture("failed_worker_crashed")
    assert after.finished_at is not None
    state = transitions.give_up_after_crashes(fixture("running_taken_over_after_a_crash"), after.finished_at,
                                              max_attempts=2)
    assert written(state) == stored("failed_worker_crashed")
    assert state.last_error is not None and state.last_error.code == "worker_crashed"
    assert state.last_error.message.startswith("the export crashed the worker 2 times")


def test_a_batch_with_attempts_left_is_taken_over_not_failed() -> None:
    running = fixture("running_taken_over_after_a_crash")
    assert not transitions.crashed_too_often(running, max_attempts=3)
    with pytest.raises(TransitionRefused, match="has used 2 of 3 attempts"):
        transitions.give_up_after_crashes(running, MOMENT, max_attempts=3)


@pytest.mark.parametrize("name", ["pending_staged_with_staging_ids", "failed_worker_crashed", "landed_events"])
def test_only_a_running_batch_can_be_given_up_for_crashes(name: str) -> None:
    assert not transitions.crashed_too_often(fixture(name), max_attempts=1)
    with pytest.raises(TransitionRefused, match="'give_up_after_crashes' starts only from running"):
        transitions.give_up_after_crashes(fixture(name), MOMENT, max_attempts=1)


def test_a_retry_gives_a_crashed_batch_a_fresh_budget_and_forgets_its_crashes() -> None:
    state = transitions.retry(fixture("failed_worker_crashed"), MOMENT)
    assert (state.state, state.attempts, state.crashes, state.total_attempts) == ("pending", 0, 0, 2)
    assert "crashes" not in state.to_json()
