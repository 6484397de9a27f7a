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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import ContainerClient

from shared.control import batches, destination_activity, transitions
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
        destination_activity.note_saved(dead, landed)  # does not raise
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
