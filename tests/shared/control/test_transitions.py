"""Each batch state transition, allowed and refused.

Where the previous code wrote a pair of documents for the same batch (fixtures/README.md), the transition,
given the moment the previous code used, must write the second document from the first, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.control import batches, transitions
from shared.control.batch_state import BatchState
from shared.control.transitions import TransitionRefused
from shared.errors import Conflict, DestinationProblem
from shared.services import Services
from tests.shared.control.stored_states import fixture, stored, written

MOMENT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)



def busy(retryable: bool = True) -> DestinationProblem:
    return DestinationProblem("the destination storage is busy", code="destination_busy", retryable=retryable)


# --- staged -------------------------------------------------------------------------------------------


def test_a_staged_batch_is_the_document_intake_wrote() -> None:
    before = fixture("pending_staged_events")
    state = transitions.staged(
        batch_id=before.batch_id, destination_id=before.destination_id, record_type=before.type,
        records=before.records, staged_bytes=before.staged_bytes, body_sha256=before.body_sha256,
        partitions=before.partitions, moment=before.created_at,
    )
    assert written(state) == stored("pending_staged_events")


# --- start_attempt --------------------------------------------------------------------------------------


def test_start_attempt_runs_a_pending_batch_as_the_previous_code_did() -> None:
    after = fixture("running_first_attempt")
    assert after.started_at is not None
    state = transitions.start_attempt(fixture("pending_staged_events"), after.started_at)
    assert written(state) == stored("running_first_attempt")


def test_start_attempt_resumes_a_running_batch_whose_worker_died() -> None:
    before = fixture("running_part_recorded_before_commit")
    state = transitions.start_attempt(before, MOMENT)
    assert (state.state, state.attempts, state.total_attempts) == ("running", 2, 2)
    assert state.export_date == before.export_date  # fixed by the first attempt: profiles stay in their folder
    assert state.written_blobs == before.written_blobs  # the next attempt knows what the last one wrote
    assert (state.started_at, state.updated_at) == (MOMENT, MOMENT)


def test_start_attempt_keeps_counting_total_attempts_after_a_retry() -> None:
    state = transitions.start_attempt(fixture("pending_retried_after_failure"), MOMENT)
    assert (state.attempts, state.total_attempts) == (1, 2)
    assert state.last_error == fixture("pending_retried_after_failure").last_error  # shown until it lands


@pytest.mark.parametrize("name", ["landed_events", "landed_with_notes"])
def test_landed_to_running_is_refused(name: str) -> None:
    with pytest.raises(TransitionRefused, match="is landed: 'start_attempt' starts only from pending or running"):
        transitions.start_attempt(fixture(name), MOMENT)


def test_failed_to_running_is_refused_until_a_retry() -> None:
    with pytest.raises(TransitionRefused, match="is failed"):
        transitions.start_attempt(fixture("failed_sas_expired"), MOMENT)


# --- record_parts ---------------------------------------------------------------------------------------


def test_record_parts_notes_a_part_before_its_commit_as_the_previous_code_did() -> None:
    after = fixture("running_part_recorded_before_commit")
    state = transitions.record_parts(fixture("running_first_attempt"), after.written_blobs, after.updated_at)
    assert written(state) == stored("running_part_recorded_before_commit")


def test_record_parts_notes_many_parts_in_one_change_each_once() -> None:
    names = ["events/a-0000.jsonl.gz", "events/b-0000.jsonl.gz", "events/a-0000.jsonl.gz"]
    state = transitions.record_parts(fixture("running_first_attempt"), names, MOMENT)
    assert state.written_blobs == ("events/a-0000.jsonl.gz", "events/b-0000.jsonl.gz")
    assert transitions.record_parts(state, names[:2], MOMENT) is state


def test_record_parts_leaves_parts_already_on_record_as_they_are() -> None:
    before = fixture("running_part_recorded_before_commit")
    assert transitions.record_parts(before, before.written_blobs, MOMENT) is before


@pytest.mark.parametrize("name", ["pending_staged_events", "landed_events", "failed_sas_expired"])
def test_record_parts_is_refused_unless_running(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'record_parts' starts only from running"):
        transitions.record_parts(fixture(name), ["events/part.jsonl"], MOMENT)


# --- land -----------------------------------------------------------------------------------------------


def test_land_records_the_files_and_manifest_as_the_previous_code_did() -> None:
    after = fixture("landed_events")
    assert after.finished_at is not None and after.manifest is not None
    state = transitions.land(fixture("running_all_parts_recorded"), after.finished_at, files=after.blobs,
                             output_bytes=after.output_bytes, manifest=after.manifest, kept=[])
    assert written(state) == stored("landed_events")


def test_land_notes_the_stale_parts_it_could_not_delete() -> None:
    after = fixture("landed_with_notes")
    assert after.finished_at is not None and after.manifest is not None
    kept = after.notes[0].split("permission): ", 1)[1].split("; the manifest", 1)[0].split(", ")
    assert len(kept) == 4
    state = transitions.land(fixture("running_rerun_before_landing_with_notes"), after.finished_at,
                             files=after.blobs, output_bytes=after.output_bytes, manifest=after.manifest, kept=kept)
    assert written(state) == stored("landed_with_notes")


@pytest.mark.parametrize("name", ["failed_sas_expired", "failed_gave_up_after_max_attempts"])
def test_failed_to_landed_without_a_retry_is_refused(name: str) -> None:
    with pytest.raises(TransitionRefused, match="is failed: 'land' starts only from running"):
        transitions.land(fixture(name), MOMENT, files=[], output_bytes=0, manifest="m.json", kept=[])


@pytest.mark.parametrize("name", ["pending_staged_events", "landed_events"])
def test_land_is_refused_unless_running(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'land' starts only from running"):
        transitions.land(fixture(name), MOMENT, files=[], output_bytes=0, manifest="m.json", kept=[])


# --- back_off -------------------------------------------------------------------------------------------


def test_back_off_makes_the_batch_wait_as_the_previous_code_did() -> None:
    after = fixture("pending_backing_off_after_busy_destination")
    assert after.last_error is not None and after.next_attempt_at is not None
    problem = DestinationProblem(after.last_error.message, code=after.last_error.code, retryable=True)
    state = transitions.back_off(fixture("running_before_backing_off"), problem, after.updated_at,
                                 due=after.next_attempt_at, max_attempts=5)
    assert written(state) == stored("pending_backing_off_after_busy_destination")
    assert state.waiting_at(after.updated_at) and not state.waiting_at(after.next_attempt_at)


def test_back_off_is_refused_for_a_problem_waiting_cannot_fix() -> None:
    running = fixture("running_before_backing_off")
    assert not transitions.may_back_off(running, busy(retryable=False), max_attempts=5)
    with pytest.raises(TransitionRefused, match="cannot back off"):
        transitions.back_off(running, busy(retryable=False), MOMENT, due=MOMENT, max_attempts=5)


def test_back_off_is_refused_once_the_attempts_are_used() -> None:
    running = fixture("running_last_attempt_before_giving_up")  # its second attempt
    assert transitions.may_back_off(running, busy(), max_attempts=3)
    assert not transitions.may_back_off(running, busy(), max_attempts=2)
    with pytest.raises(TransitionRefused, match="2 attempt\\(s\\) used all 2"):
        transitions.back_off(running, busy(), MOMENT, due=MOMENT, max_attempts=2)


@pytest.mark.parametrize("name", ["pending_staged_events", "landed_events", "failed_sas_expired"])
def test_back_off_is_refused_unless_running(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'back_off' starts only from running"):
        transitions.back_off(fixture(name), busy(), MOMENT, due=MOMENT, max_attempts=5)


# --- fail -----------------------------------------------------------------------------------------------


def test_fail_records_a_problem_waiting_cannot_fix_as_the_previous_code_did() -> None:
    after = fixture("failed_sas_expired")
    assert after.last_error is not None and after.finished_at is not None
    problem = DestinationProblem(after.last_error.message, code=after.last_error.code)
    state = transitions.fail(fixture("running_before_sas_expired"), problem, after.finished_at)
    assert written(state) == stored("failed_sas_expired")


def test_fail_after_the_last_attempt_says_it_gave_up_as_the_previous_code_did() -> None:
    after = fixture("failed_gave_up_after_max_attempts")
    assert after.last_error is not None and after.finished_at is not None
    message = after.last_error.message.removeprefix("gave up after 2 attempts: ")
    problem = DestinationProblem(message, code=after.last_error.code, retryable=True)
    state = transitions.fail(fixture("running_last_attempt_before_giving_up"), problem, after.finished_at)
    assert written(state) == stored("failed_gave_up_after_max_attempts")


@pytest.mark.parametrize("name", ["pending_staged_events", "landed_events", "failed_sas_expired"])
def test_fail_is_refused_unless_running(name: str) -> None:
    with pytest.raises(TransitionRefused, match="'fail' starts only from running"):
        transitions.fail(fixture(name), busy(), MOMENT)


# --- retry and requeue_for_new_credentials ---------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [
    ("failed_container_not_found", "pending_retried_after_failure"),
    ("pending_staged_before_retry", "pending_retried_before_first_attempt"),
])
def test_retry_makes_the_batch_due_now_as_the_previous_code_did(before: str, after: str) -> None:
    state = transitions.retry(fixture(before), fixture(after).updated_at)
    assert written(state) == stored(after)


def test_requeue_for_new_credentials_makes_the_batch_due_now_as_the_previous_code_did() -> None:
    after = fixture("pending_requeued_after_credentials_update")
    state = transitions.requeue_for_new_credentials(fixture("failed_sas_expired"), after.updated_at)
    assert written(state) == stored("pending_requeued_after_credentials_update")


def test_requeue_for_new_credentials_ends_a_back_off() -> None:
    waiting = fixture("pending_backing_off_after_busy_destination")
    state = transitions.requeue_for_new_credentials(waiting, MOMENT)
    assert (state.state, state.attempts, state.next_attempt_at) == ("pending", 0, MOMENT)


Transition = Callable[[BatchState, datetime], BatchState]


@pytest.mark.parametrize("transition", [transitions.retry, transitions.requeue_for_new_credentials])
@pytest.mark.parametrize(("name", "message"), [
    ("landed_events", "has already landed; there is nothing to retry"),
    ("running_after_retry", "is being exported right now; check its status shortly"),
])
def test_retrying_a_landed_or_running_batch_is_refused_with_a_409(transition: Transition, name: str,
                                                                  message: str) -> None:
    state = fixture(name)
    with pytest.raises(TransitionRefused) as refused:
        transition(state, MOMENT)
    assert refused.value.message == f"batch '{state.batch_id}' {message}"
    assert isinstance(refused.value, Conflict) and refused.value.status == 409


def test_retry_over_http_answers_the_same_409_as_before(api: httpx.Client, services: Services) -> None:
    landed = fixture("landed_events")
    batches.save_state(services.control, landed)
    answer = api.post(f"/api/batches/{landed.batch_id}/retry")
    assert answer.status_code == 409
    assert answer.json() == {"error": {"code": "conflict", "details": [], "message":
                                       f"batch '{landed.batch_id}' has already landed; there is nothing to retry"}}
    assert batches.get_state(services.control, landed.batch_id) == landed  # nothing changed


def test_retry_over_http_makes_a_failed_batch_due(api: httpx.Client, services: Services) -> None:
    failed = fixture("failed_container_not_found")
    batches.save_state(services.control, failed)
    answer = api.post(f"/api/batches/{failed.batch_id}/retry")
    assert answer.status_code == 200 and answer.json()["state"] == "pending"
    state = batches.get_state(services.control, failed.batch_id)
    assert (state.state, state.attempts, state.total_attempts) == ("pending", 0, 1)
    assert state.next_attempt_at is not None
    assert abs(state.next_attempt_at - datetime.now(UTC)) < timedelta(minutes=1)
