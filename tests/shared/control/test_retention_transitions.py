"""The transitions of issue 11's retention and destination deletion, allowed and refused.

The fixtures `landed_staged_records_deleted`, `failed_staged_records_deleted` and `failed_destination_deleted`
are what these transitions write (at MOMENT) from `landed_events`, `failed_container_not_found` and
`pending_staged_events`: the new keys come last, and the older documents still round-trip without them
(test_batch_state.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from shared.control import transitions
from shared.control.batch_state import BatchState
from shared.control.transitions import TransitionRefused
from tests.shared.control.stored_states import fixture, stored, written

MOMENT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)



def test_staged_records_deleted_after_landing_is_noted_in_the_state() -> None:
    assert written(transitions.staged_records_deleted(fixture("landed_events"), MOMENT)) == stored(
        "landed_staged_records_deleted")


def test_staged_records_of_a_failed_batch_deleted_the_state_says_so() -> None:
    after = transitions.staged_records_deleted(fixture("failed_container_not_found"), MOMENT, after_days=30)
    assert written(after) == stored("failed_staged_records_deleted")
    assert after.notes[-1].startswith("its staged records were deleted after 30 days failed")
    with pytest.raises(TransitionRefused, match="can no longer be retried: its staged records were deleted on "
                                                "2026-11-27; send its records again as a new batch"):
        transitions.retry(after, MOMENT)


@pytest.mark.parametrize("name", ["pending_staged_events", "running_first_attempt"])
def test_staged_records_are_kept_while_the_batch_is_not_finished(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'staged_records_deleted' starts only from failed or landed"):
        transitions.staged_records_deleted(fixture(name), MOMENT)


def test_staged_records_are_deleted_once() -> None:
    with pytest.raises(TransitionRefused, match="already deleted"):
        transitions.staged_records_deleted(fixture("landed_staged_records_deleted"), MOMENT)


@pytest.mark.parametrize("name", ["pending_staged_events", "failed_sas_expired"])
def test_a_deleted_destination_fails_its_pending_and_failed_batches(name: str) -> None:
    after = transitions.fail_for_deleted_destination(fixture(name), MOMENT)
    assert (after.state, after.finished_at, after.staged_deleted_at, after.next_attempt_at) == (
        "failed", MOMENT, MOMENT, None)
    assert after.last_error is not None
    assert (after.last_error.code, after.last_error.message) == ("destination_deleted", "destination deleted")
    if name == "pending_staged_events":
        assert written(after) == stored("failed_destination_deleted")


@pytest.mark.parametrize("name", ["running_first_attempt", "landed_events"])
def test_a_deleted_destination_leaves_running_and_landed_batches_alone(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'fail_for_deleted_destination' starts only from failed or pending"):
        transitions.fail_for_deleted_destination(fixture(name), MOMENT)


@pytest.mark.parametrize("name", ["landed_staged_records_deleted", "failed_staged_records_deleted",
                                  "failed_destination_deleted"])
def test_the_new_shapes_round_trip(name: str) -> None:
    assert written(fixture(name)) == stored(name)


def test_a_batch_staged_with_a_destination_generation_records_it_and_round_trips() -> None:
    before = fixture("pending_staged_events")
    state = transitions.staged(
        batch_id=before.batch_id, destination_id=before.destination_id, record_type=before.type,
        records=before.records, staged_bytes=before.staged_bytes, body_sha256=before.body_sha256,
        partitions=before.partitions, moment=before.created_at, destination_generation="5f0c6a8e2b7d4c1e")
    assert state.destination_generation == "5f0c6a8e2b7d4c1e"
    assert written(state) == stored("pending_staged_events")[:-1] + b',"destination_generation":"5f0c6a8e2b7d4c1e"}'
    assert BatchState.from_json(orjson.loads(written(state))) == state
    assert written(state.changed(destination_generation=None)) == stored("pending_staged_events")
