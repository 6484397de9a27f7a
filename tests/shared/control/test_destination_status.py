"""A destination's status (shared.control.destination_status) and the activity it reads
(shared.control.destination_activity), against Azurite.

The activity: which saves bring a change (tried on every state document the app has stored), merging in any
order, concurrent writers from threads and from another process's store losing nothing, and a broken control
storage never failing the save. The status: counts from markers, the oldest batch not landed, what "up to date"
means, an earlier generation's batches not counted, and a cost in storage calls that does not grow with the
destination's history.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from shared.control import batch_index, batches, destination_activity, destination_status, transitions
from shared.control.batch_state import BatchState
from shared.control.destination_activity import Change, DestinationActivity, LandedNote, change_of, merged
from shared.control.store import ControlStore
from shared.errors import DestinationProblem
from shared.services import Services
from tests.shared.control.stored_states import FIXTURES, fixture
from tests.support.azurite import Azurite

MOMENT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
BUSY = DestinationProblem("the destination storage is busy (503); it will be tried again", code="destination_busy",
                          retryable=True)
EXPIRED = DestinationProblem("the SAS token expired on 2026-11-19T00:00Z; renew it and update the destination",
                             code="sas_expired")


def landed_change(at: datetime, batch_id: str = "b1", records: int = 10, generation: str = "g1") -> Change:
    return Change(generation, landed=LandedNote(at=at, batch_id=batch_id, records=records))


# --- Which saves bring a change -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_only_the_save_that_lands_a_batch_or_records_an_error_changes_the_activity(name: str) -> None:
    """Every state document the app has stored: the landing and error saves bring their change; a later save of
    the same batch (retention's, a retry's, a new attempt's) keeps older moments and brings none."""
    state = fixture(name)
    change = change_of(state)
    if state.state == "landed" and state.staged_deleted_at is None:
        assert change is not None and change.landed is not None and change.error is None
        assert (change.landed.at, change.landed.batch_id, change.landed.records) == (
            state.finished_at, state.batch_id, state.records)
    elif state.state in {"failed", "pending"} and state.last_error is not None and \
            state.last_error.at == state.updated_at:
        assert change is not None and change.error is not None and change.landed is None
        assert (change.error.code, change.error.message) == (state.last_error.code, state.last_error.message)
        assert change.error.will_retry is (state.state == "pending")
    else:
        assert change is None


def test_each_transition_of_an_export_brings_the_change_it_should() -> None:
    staged = fixture("pending_staged_events")
    running = transitions.start_attempt(staged, MOMENT)
    assert change_of(staged) is None and change_of(running) is None
    waiting = transitions.back_off(running, BUSY, MOMENT + timedelta(seconds=1), due=MOMENT + timedelta(minutes=1),
                                   max_attempts=5)
    error = change_of(waiting)
    assert error is not None and error.error is not None and error.error.will_retry and error.error.attempt == 1
    again = transitions.start_attempt(waiting, MOMENT + timedelta(minutes=1))
    assert change_of(again) is None  # the error is still on the state, but this save did not record it
    failed = transitions.fail(again, EXPIRED, MOMENT + timedelta(minutes=2))
    final = change_of(failed)
    assert final is not None and final.error is not None and not final.error.will_retry
    assert final.error.code == "sas_expired" and "renew it" in final.error.message
    retried = transitions.retry(failed, MOMENT + timedelta(minutes=3))
    assert change_of(retried) is None
    third = transitions.start_attempt(retried, MOMENT + timedelta(minutes=4))
    landed = transitions.land(third, MOMENT + timedelta(minutes=5), files=[], output_bytes=0, manifest="m.json",
                              kept=[])
    landing = change_of(landed)
    assert landing is not None and landing.landed is not None and landing.landed.at == MOMENT + timedelta(minutes=5)
    assert change_of(transitions.staged_records_deleted(landed, MOMENT + timedelta(hours=1))) is None


# --- Merging ---------------------------------------------------------------------------------------------------


def test_the_newer_landing_and_error_win_whatever_the_order_and_every_landing_is_counted() -> None:
    empty = DestinationActivity(destination_id="acme")
    early, late = landed_change(MOMENT, "b-early", 5), landed_change(MOMENT + timedelta(minutes=5), "b-late", 7)
    for order in ([early, late], [late, early]):
        entry = merged(empty, order, MOMENT + timedelta(hours=1)).generations["g1"]
        assert entry.last_landed is not None and entry.last_landed.batch_id == "b-late"
        assert entry.landed_by_hour == {"2026-11-20T09": destination_activity.HourCount(batches=2, records=12)}


def test_hours_older_than_48_and_all_but_the_latest_generations_are_dropped() -> None:
    activity = DestinationActivity(destination_id="acme")
    for hours_ago in (0, 47, 49):
        activity = merged(activity, [landed_change(MOMENT - timedelta(hours=hours_ago))], MOMENT)
    assert sorted(activity.generations["g1"].landed_by_hour) == ["2026-11-18T10", "2026-11-20T09"]
    for n in range(6):
        activity = merged(activity, [landed_change(MOMENT + timedelta(minutes=n), generation=f"gen-{n}")], MOMENT)
    assert sorted(activity.generations) == ["gen-2", "gen-3", "gen-4", "gen-5"]


# --- Writing to control storage --------------------------------------------------------------------------------


def test_concurrent_landings_from_threads_and_another_process_lose_no_count_and_keep_the_newest(
    services: Services, azurite: Azurite,
) -> None:
    """48 landings at once: 32 from this process's threads, 16 from another store of the same container (as
    another instance writes, with its own ETags); the count is exact and the newest landing is kept."""
    other = ControlStore(ContainerClient.from_connection_string(azurite.connection_string,
                                                                services.control.container.container_name))
    now = datetime.now(UTC)
    changes = [(services.control if n % 3 else other, landed_change(now - timedelta(seconds=n), f"b{n:03d}", n))
               for n in range(48)]
    with ThreadPoolExecutor(16) as pool:
        written = list(pool.map(lambda pair: destination_activity.record_changes(
            pair[0], "acme", [pair[1]], now), changes))
    assert all(written)
    entry = destination_activity.read_activity(services.control, "acme").generations["g1"]
    assert sum(count.batches for count in entry.landed_by_hour.values()) == 48
    assert sum(count.records for count in entry.landed_by_hour.values()) == sum(range(48))
    assert entry.last_landed is not None and entry.last_landed.batch_id == "b000"


def test_saving_states_records_landings_and_errors_for_their_destination_s_generation(services: Services) -> None:
    control = services.control
    state = fixture("pending_staged_events").changed(destination_id="acme", destination_generation="g-7")
    running = transitions.start_attempt(state, MOMENT)
    batches.save_state(control, running)
    assert destination_activity.read_activity(control, "acme").generations == {}
    batches.save_state(control, transitions.back_off(running, BUSY, MOMENT, due=MOMENT, max_attempts=5))
    landed = transitions.land(transitions.start_attempt(running, MOMENT + timedelta(seconds=30)),
                              MOMENT + timedelta(minutes=1), files=[], output_bytes=0, manifest="m.json", kept=[])
    batches.save_state(control, landed)
    entry = destination_activity.read_activity(control, "acme").generations["g-7"]
    assert entry.last_error is not None and entry.last_error.code == "destination_busy" and entry.last_error.will_retry
    assert entry.last_landed is not None and entry.last_landed.at == MOMENT + timedelta(minutes=1)


def test_a_broken_control_storage_never_fails_the_save_that_brought_the_change(
    caplog: pytest.LogCaptureFixture, azurite: Azurite,
) -> None:
    from azure.storage.blob import ExponentialRetry

    from tests.support.azurite import connection_string, free_port

    dead = ControlStore(ContainerClient.from_connection_string(
        connection_string(free_port()), "nowhere", retry_policy=ExponentialRetry(retry_total=0)))
    dead._ready = True  # the container is taken as made: the activity write is the first call to fail
    landed = fixture("landed_events")
    with caplog.at_level(logging.WARNING, logger="shared.control.destination_activity"):
        destination_activity.note_saved(dead, [landed])  # does not raise
    assert "destination activity not recorded" in caplog.text and landed.batch_id in caplog.text


def test_threads_waiting_for_the_document_are_written_together(services: Services, azurite: Azurite) -> None:
    """While one write is in flight, the changes that arrive wait and go in one write, not one each."""
    puts: list[str] = []
    client = ContainerClient.from_connection_string(
        azurite.connection_string, services.control.container.container_name,
        raw_request_hook=lambda request: puts.append(request.http_request.method)
        if "activity/" in request.http_request.url else None)
    control = ControlStore(client)
    now = datetime.now(UTC)
    start = threading.Barrier(24)

    def land(n: int) -> bool:
        start.wait()
        return destination_activity.record_changes(control, "busy", [landed_change(now, f"b{n}")], now)

    with ThreadPoolExecutor(24) as pool:
        assert all(pool.map(land, range(24)))
    entry = destination_activity.read_activity(control, "busy").generations["g1"]
    assert sum(count.batches for count in entry.landed_by_hour.values()) == 24
    assert puts.count("PUT") < 24, puts


# --- The status ------------------------------------------------------------------------------------------------


class Batches:
    """Batches of one destination moved through their states as the export pass moves them (the same saves and
    markers, in the same order), at chosen moments."""

    def __init__(self, control: ControlStore, destination_id: str = "acme", generation: str | None = "g1"):
        self.control, self.destination_id, self.generation = control, destination_id, generation

    def accepted(self, moment: datetime, records: int = 3) -> BatchState:
        text = b"".join(b'{"event":"e","n":%d}\n' % n for n in range(records))
        part = batches.StagedPart(key="date=2026-11-30/hour=09", text=text, records=records, columns=["event", "n"])
        batch = batches.NewBatch(
            batch_id=batches.new_batch_id(moment, self.destination_id, None), destination_id=self.destination_id,
            record_type="events", parts=[part], records=records, body_sha256=uuid.uuid4().hex, moment=moment,
            destination_generation=self.generation)
        return batches.stage_batch(self.control, batch)[0]

    def running(self, state: BatchState, moment: datetime) -> BatchState:
        running = transitions.start_attempt(state, moment)
        batches.save_state(self.control, running, previous=state.state)
        return running

    def backing_off(self, state: BatchState, moment: datetime, due: datetime) -> BatchState:
        running = self.running(state, moment)
        waiting = transitions.back_off(running, BUSY, moment, due=due, max_attempts=5)
        batches.save_state(self.control, waiting, previous="running")
        return waiting

    def failed(self, state: BatchState, moment: datetime) -> BatchState:
        failed = transitions.fail(self.running(state, moment), EXPIRED, moment)
        batches.save_state(self.control, failed, previous="running")
        self.control.put_bytes(batches.failed_marker(self.destination_id, state.batch_id), b"")
        return failed

    def landed(self, state: BatchState, moment: datetime, *, open_marker_deleted: bool = True) -> BatchState:
        running = self.running(state, moment)
        landed = transitions.land(running, moment, files=[], output_bytes=0, manifest="m.json", kept=[])
        batches.save_state(self.control, landed, previous="running")
        if not open_marker_deleted:  # the worker died before the open marker went
            batch_index.mark_open(self.control, running)
        return landed


NOW = datetime.now(UTC).replace(microsecond=0)
ACME = destination_status.Subject("acme", "g1", created_at=NOW - timedelta(days=2), threshold=timedelta(minutes=15))


def status(control: ControlStore, subject: destination_status.Subject = ACME,
           now: datetime | None = None) -> dict[str, Any]:
    return destination_status.destination_status(control, subject, now or datetime.now(UTC))


def test_a_destination_with_nothing_yet_is_up_to_date_with_nothing_to_show(services: Services) -> None:
    answer = status(services.control)
    assert answer["up_to_date"] is True and answer["reasons"] == []
    assert answer["counts"] == {"pending": 0, "retrying": 0, "running": 0, "failed": 0, "landed_last_24h": 0}
    assert answer["oldest_pending"] is None and answer["last_landed"] is None and answer["last_error"] is None
    assert len(answer["landed_by_hour"]) == 48 and not any(h["batches"] for h in answer["landed_by_hour"])


def test_counts_per_state_the_oldest_batch_not_landed_the_last_landing_and_the_last_error(
    services: Services,
) -> None:
    made = Batches(services.control)
    oldest = made.accepted(NOW - timedelta(minutes=10))
    made.running(oldest, NOW - timedelta(minutes=1))
    waiting = made.accepted(NOW - timedelta(minutes=8))
    made.backing_off(waiting, NOW - timedelta(minutes=2), due=NOW + timedelta(hours=1))
    made.accepted(NOW - timedelta(minutes=5))
    made.landed(made.accepted(NOW - timedelta(minutes=7), records=4), NOW - timedelta(minutes=6))
    made.landed(made.accepted(NOW - timedelta(minutes=4), records=6), NOW - timedelta(minutes=3))
    made.accepted(NOW - timedelta(minutes=3), records=2)
    Batches(services.control, destination_id="other").accepted(NOW - timedelta(hours=5))  # not acme's

    answer = status(services.control, now=NOW)
    assert answer["counts"] == {"pending": 3, "retrying": 1, "running": 1, "failed": 0, "landed_last_24h": 2}
    assert answer["records_landed_last_24h"] == 10
    assert answer["oldest_pending"] == {"batch_id": oldest.batch_id, "state": "running",
                                        "accepted_at": (NOW - timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
                                        "age_seconds": 600.0}
    assert answer["last_landed"]["at"].startswith((NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M"))
    assert answer["last_landed"]["records"] == 6 and answer["last_landed"]["age_seconds"] == 180.0
    assert answer["last_error"]["code"] == "destination_busy" and answer["last_error"]["will_retry"] is True
    assert answer["up_to_date"] is True, answer["reasons"]  # nothing failed, nothing older than 15 minutes


def test_a_failed_batch_or_a_batch_older_than_the_threshold_is_not_up_to_date_and_the_reasons_say_why(
    services: Services,
) -> None:
    made = Batches(services.control)
    stale = made.accepted(NOW - timedelta(minutes=42))
    failed = made.failed(made.accepted(NOW - timedelta(minutes=3)), NOW - timedelta(minutes=2))
    answer = status(services.control, now=NOW)
    assert answer["up_to_date"] is False and answer["counts"]["failed"] == 1 and answer["counts"]["pending"] == 1
    assert answer["reasons"] == [
        "1 batch(es) failed and wait for a retry (POST /api/batches/{batch_id}/retry) or new credentials (PUT the "
        "destination); see last_error",
        f"batch {stale.batch_id} was accepted 42 minutes ago and is still pending, over the 15 minutes allowed"]
    assert answer["last_error"]["batch_id"] == failed.batch_id and answer["last_error"]["code"] == "sas_expired"
    assert answer["last_error"]["will_retry"] is False
    relaxed = destination_status.Subject("acme", "g1", ACME.created_at, threshold=timedelta(hours=1))
    assert status(services.control, relaxed, now=NOW)["reasons"] == answer["reasons"][:1]

    batches.retry_batch(services.control, failed.batch_id)  # due again: pending, not failed
    again = status(services.control, relaxed, now=NOW)
    assert again["counts"]["failed"] == 0 and again["counts"]["pending"] == 2 and again["up_to_date"] is True


def test_a_crash_after_the_landing_leaves_the_status_behind_until_the_next_pass_never_wrong_for_long(
    services: Services,
) -> None:
    """The landed state is saved but its worker dies before deleting the open marker: the batch still counts as
    not landed (behind, not wrong), and the next export pass removes the marker."""
    from shared.export.runner import run_export_pass

    made = Batches(services.control)
    landed = made.landed(made.accepted(NOW - timedelta(minutes=2)), NOW - timedelta(minutes=1),
                         open_marker_deleted=False)
    behind = status(services.control)
    assert behind["counts"]["running"] == 1 and behind["last_landed"]["batch_id"] == landed.batch_id
    run_export_pass(services)
    healed = status(services.control)
    assert healed["counts"]["pending"] + healed["counts"]["running"] == 0 and healed["oldest_pending"] is None


def test_a_lost_activity_write_is_made_right_by_the_destination_s_next_landing(services: Services) -> None:
    made = Batches(services.control)
    first = made.landed(made.accepted(NOW - timedelta(minutes=9)), NOW - timedelta(minutes=8))
    crashed = transitions.land(made.running(made.accepted(NOW - timedelta(minutes=7)), NOW - timedelta(minutes=6)),
                               NOW - timedelta(minutes=6), files=[], output_bytes=0, manifest="m.json", kept=[])
    services.control.put(batches.state_blob(crashed.batch_id), crashed.to_json())  # the save, then the crash
    opened = batch_index.open_marker(crashed.destination_id, crashed.batch_id, crashed.created_at)
    services.control.delete(opened)  # (the next pass would)
    assert status(services.control)["last_landed"]["batch_id"] == first.batch_id  # behind
    later = made.landed(made.accepted(NOW - timedelta(minutes=5)), NOW - timedelta(minutes=4))
    assert status(services.control)["last_landed"]["batch_id"] == later.batch_id


def test_an_earlier_generation_s_batches_never_count_for_the_destination_created_again(services: Services) -> None:
    """Before the re-creation: landed, failed and pending batches of generation g1. After it (g2): one of g1's,
    mid-export during the forced delete, fails and leaves its failed marker under the same id."""
    old = Batches(services.control, generation="g1")
    old.landed(old.accepted(NOW - timedelta(hours=3)), NOW - timedelta(hours=3))
    old.failed(old.accepted(NOW - timedelta(hours=3)), NOW - timedelta(hours=3))
    old.accepted(NOW - timedelta(hours=3))
    straggler = old.running(old.accepted(NOW - timedelta(hours=3)), NOW - timedelta(hours=3))
    # Markers carry the service's clock to the second: the re-creation is at the next whole second, so every
    # marker written so far is before it, and every one written from then on is not.
    boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    recreated = boundary + destination_status.CLOCK_SKEW
    g2 = destination_status.Subject("acme", "g2", created_at=recreated, threshold=timedelta(minutes=15))
    assert status(services.control, g2, now=recreated)["counts"] == {
        "pending": 0, "retrying": 0, "running": 0, "failed": 0, "landed_last_24h": 0}
    while datetime.now(UTC) < boundary:
        threading.Event().wait(0.05)
    old.failed(straggler, datetime.now(UTC))
    new = Batches(services.control, generation="g2")
    failed_new = new.failed(new.accepted(datetime.now(UTC)), datetime.now(UTC))
    answer = status(services.control, g2)
    assert answer["counts"]["failed"] == 1 and answer["last_error"]["batch_id"] == failed_new.batch_id
    assert answer["last_landed"] is None and answer["counts"]["landed_last_24h"] == 0
    assert status(services.control, ACME)["last_error"]["batch_id"] == straggler.batch_id  # g1's own view


def test_the_answer_costs_the_same_few_storage_calls_whatever_the_destination_s_history(
    services: Services, azurite: Azurite,
) -> None:
    """2,000 landed batches (their destination's and state's listing markers, as the index holds them) cost
    nothing: the answer reads the open batches' markers (pending and running in one listing), the failed markers,
    one document, and the destination's alerts (issue 17: a listing, none raised here)."""
    calls: list[str] = []
    client = ContainerClient.from_connection_string(azurite.connection_string,
                                                    services.control.container.container_name,
                                                    raw_request_hook=lambda request: calls.append(request))
    counting = ControlStore(client)
    made = Batches(services.control)
    made.landed(made.accepted(NOW - timedelta(minutes=3)), NOW - timedelta(minutes=2))
    made.accepted(NOW - timedelta(minutes=1))

    def measure() -> tuple[dict[str, Any], int]:
        before = len(calls)
        answer = status(counting)
        return answer, len(calls) - before

    status(counting)  # the container is known to exist from here on
    small, small_calls = measure()
    landed = fixture("landed_events")

    def history(n: int) -> None:
        state = landed.changed(batch_id=f"b20261101000000{n:017d}", destination_id="acme",
                               created_at=NOW - timedelta(days=1, seconds=n))
        for marker in batch_index.markers(state.batch_id, "acme", "landed", state.created_at)[1:]:
            client.upload_blob(marker, b"", metadata=state.metadata(), overwrite=True)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(history, range(2000)))
    large, large_calls = measure()
    assert small_calls == large_calls == 4, (small_calls, large_calls)
    assert small["counts"] == large["counts"] and large["counts"]["pending"] == 1
    client.delete_container()  # 4,000 blobs the session's last secret sweep need not read
