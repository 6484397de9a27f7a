"""One marker per open batch (`index/batches/open/{destination}/`): intake writes it first, saying `staging`, the
commit makes it pending with its due time, and the export finds due batches by it and deletes it when the batch
finishes.
Before, a second marker per batch (`index/due/{id}`) said the same, at one more write and one more delete (the
most expensive request of a small batch on Azurite); markers of that kind still in storage are moved over."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.control import batch_index, batches
from shared.control.batch_state import iso
from shared.control.store import ControlStore
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import is_open, jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite

EVENTS = [{"event": "Signed up", "ts": 1763629200 + i, "$insert_id": f"i{i}"} for i in range(4)]


def open_markers(control: ControlStore) -> dict[str, dict[str, str]]:
    return {item.name: item.metadata for item in control.list(batch_index.OPEN, with_metadata=True)}


def later(minutes: float) -> Callable[[], datetime]:
    return lambda: batches.now_utc() + timedelta(minutes=minutes)


def listed(api: httpx.Client, **params: str) -> list[str]:
    return [b["batch_id"] for b in api.get("/api/batches", params=params).json()["batches"]]


def test_intake_writes_the_open_marker_first_and_the_commit_makes_it_pending_with_its_due_time(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_destination(api, azurite, fresh_container)
    writes: list[tuple[str, dict[str, str] | None]] = []
    real_put_bytes = services.control.put_bytes

    def put_bytes(name: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        writes.append((name, metadata))
        real_put_bytes(name, data, metadata=metadata)

    monkeypatch.setattr(services.control, "put_bytes", put_bytes)
    batch = post_batch(api, "acme", EVENTS)
    state = batches.get_state(services.control, batch["batch_id"])
    marker = batch_index.open_marker("acme", state.batch_id, state.created_at)
    assert writes[0] == (marker, {"state": "staging", "destination": "acme", "type": "events",
                                  "created": iso(state.created_at), "due_at": f"{state.created_at.timestamp():.3f}"})
    assert open_markers(services.control) == {marker: {**state.metadata(), "due_at": writes[0][1]["due_at"],
                                                       "bytes": str(state.staged_bytes)}}  # what it staged
    assert [name for name, _ in writes] == [marker, marker]  # intake's only markers: no listing markers
    assert list(services.control.list(batches.LEGACY_DUE_PREFIX)) == []  # no second marker any more

    assert run_export_pass(services).landed == 1
    assert open_markers(services.control) == {}  # the landing's save deleted it: the only delete of the batch
    assert listed(api, state="landed") == [batch["batch_id"]]
    index = [item.name for item in services.control.list("index/batches/") if item.name != batch_index.BACKFILL]
    key = batch_index.newest_first_key(state.created_at, state.batch_id)
    assert sorted(index) == [f"{batch_index.ALL}{key}", f"{batch_index.BY_DESTINATION}acme/{key}"]  # no state/landed/


def test_an_intake_still_at_work_is_neither_listed_nor_counted_nor_exported(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    moment = batches.now_utc()
    batch_id = batches.new_batch_id(moment, "acme", None)
    batch_index.mark_staging(services.control, batch_id, "acme", "events", moment)  # staging, not committed

    assert listed(api, state="pending") == [] and listed(api) == [] and listed(api, destination_id="acme") == []
    counts = api.get("/api/destinations/acme/status").json()["counts"]
    assert counts["pending"] == counts["running"] == 0
    assert run_export_pass(services).batches == []
    assert is_open(services.control, batch_id)  # left to its intake
    # Deleting the destination neither waits for it nor removes its marker: the intake may commit a moment later,
    # and its batch must still be found (then failed: the destination no longer exists).
    assert api.delete("/api/destinations/acme").status_code == 204
    assert is_open(services.control, batch_id)


def test_a_commit_whose_listing_markers_were_never_written_is_exported_once_its_marker_is_a_minute_old(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake died after its commit, before its listing markers: its open marker still says staging."""
    make_destination(api, azurite, fresh_container)

    def dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the intake's process died here")

    with monkeypatch.context() as dying:
        dying.setattr(batch_index, "record_all", dies)
        batch = post_batch(api, "acme", EVENTS)  # (the 202 the client got, had the process lived)
    [metadata] = open_markers(services.control).values()
    assert metadata["state"] == "staging"

    assert run_export_pass(services).batches == []  # young: an intake may still be at work
    assert run_export_pass(services, clock=later(2)).landed == 1
    assert open_markers(services.control) == {}
    assert listed(api, state="landed") == [batch["batch_id"]]
    assert len(jsonl_records(fresh_container)) == len(EVENTS)


def test_a_staging_marker_of_a_request_that_lost_an_idempotency_race_goes_and_the_batch_lands_once(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    batch = post_batch(api, "acme", EVENTS, **{"Idempotency-Key": "order-7"})
    state = batches.get_state(services.control, batch["batch_id"])
    loser = state.created_at + timedelta(milliseconds=3)  # a second request with the key, dead before it lost
    batch_index.mark_staging(services.control, state.batch_id, "acme", "events", loser)

    summary = run_export_pass(services, clock=later(2))
    assert [b["outcome"] for b in summary.batches] == ["landed"]
    assert open_markers(services.control) == {}
    assert len(jsonl_records(fresh_container)) == len(EVENTS)


def test_a_staging_marker_without_a_state_is_collected_with_its_staged_records_once_orphaned(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container)
    moment = batches.now_utc()
    batch_id = batches.new_batch_id(moment, "acme", None)
    batch_index.mark_staging(services.control, batch_id, "acme", "events", moment)
    services.control.put_bytes(batches.staged_blob(batch_id, "s1"), b'{"event":"x"}\n')

    assert run_export_pass(services, clock=later(2)).batches == []  # maybe an intake that is slow: kept
    assert is_open(services.control, batch_id)
    assert run_export_pass(services, clock=later(16)).batches == []
    assert not is_open(services.control, batch_id)
    assert list(services.control.list(f"{batches.STAGED_PREFIX}{batch_id}/")) == []


def test_due_markers_written_before_are_moved_over_and_their_batches_exported_once(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """As a deployment of the earlier version leaves them: a pending batch whose open marker has no due time and
    whose due marker is `index/due/{id}`; a landed batch whose due marker a crash left; an orphan's due marker."""
    control = services.control
    make_destination(api, azurite, fresh_container)
    pending = post_batch(api, "acme", EVENTS)["batch_id"]
    landed = post_batch(api, "acme", EVENTS[:1])["batch_id"]
    assert run_export_pass(services, due=[(landed, "acme")]).landed == 1
    state = batches.get_state(control, pending)
    control.put_bytes(batch_index.open_marker("acme", pending, state.created_at), b"", metadata=state.metadata())
    orphan = batches.new_batch_id(batches.now_utc(), "acme", None)
    control.put_bytes(batches.staged_blob(orphan, "s1"), b'{"event":"x"}\n')
    for batch_id in (pending, landed, orphan):
        control.put_bytes(f"{batches.LEGACY_DUE_PREFIX}{batch_id}", b"",
                          metadata={"destination": "acme", "due_at": f"{state.created_at.timestamp():.3f}"})

    summary = run_export_pass(services)
    assert [(b["batch_id"], b["outcome"]) for b in summary.batches] == [(pending, "landed")]
    assert [item.name for item in control.list(batches.LEGACY_DUE_PREFIX)] == [
        f"{batches.LEGACY_DUE_PREFIX}{orphan}"]  # an intake may still be at work on it
    assert open_markers(control) == {}
    assert sorted(listed(api, state="landed")) == sorted([pending, landed])

    assert run_export_pass(services, clock=later(16)).batches == []
    assert list(control.list(batches.LEGACY_DUE_PREFIX)) == []
    assert list(control.list(f"{batches.STAGED_PREFIX}{orphan}/")) == []
    assert len(jsonl_records(fresh_container)) == len(EVENTS) + 1


def test_open_markers_of_the_earlier_layout_are_moved_to_their_destinations_folder_and_exported_once(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """As the version before leaves them: open markers under `state/pending/`, with `all` and `destination`
    markers saying pending; one of a batch that landed after all (its worker died before deleting it)."""
    control = services.control
    make_destination(api, azurite, fresh_container)
    assert listed(api) == []  # the index is complete (nothing to index from before)
    pending = post_batch(api, "acme", EVENTS)["batch_id"]
    landed = post_batch(api, "acme", EVENTS[:1])["batch_id"]
    assert run_export_pass(services, due=[(landed, "acme")]).landed == 1
    for batch_id in (pending, landed):
        state = batches.get_state(control, batch_id)
        key = batch_index.newest_first_key(state.created_at, batch_id)
        metadata = {**state.metadata(), "state": "pending", "due_at": f"{state.created_at.timestamp():.3f}"}
        kept = (batch_index.LEGACY_OPEN,) if batch_id == landed else (
            batch_index.LEGACY_OPEN, batch_index.ALL, f"{batch_index.BY_DESTINATION}acme/")
        for prefix in kept:
            control.put_bytes(f"{prefix}{key}", b"", metadata=metadata)
        control.delete(batch_index.open_marker("acme", batch_id, state.created_at))

    assert listed(api) == listed(api, destination_id="acme") == [landed, pending]  # as their markers say
    summary = run_export_pass(services)
    assert {b["batch_id"]: b["outcome"] for b in summary.batches} == {pending: "landed", landed: "skipped"}
    assert list(control.list(batch_index.LEGACY_OPEN)) == [] and open_markers(control) == {}
    assert sorted(listed(api, state="landed")) == sorted(listed(api)) == sorted([pending, landed])
    assert len(jsonl_records(fresh_container)) == len(EVENTS) + 1


def test_a_destinations_open_batches_are_one_listing_of_its_own_folder(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its status, its queue messages and deleting it read its own open markers, not every destination's."""
    make_destination(api, azurite, fresh_container)
    ids = sorted(post_batch(api, "acme", EVENTS)["batch_id"] for _ in range(2))
    moment = batches.now_utc()
    for n in range(50):  # other destinations' open batches
        batch_index.mark_staging(services.control, batches.new_batch_id(moment, f"other-{n}", None), f"other-{n}",
                                 "events", moment)
    read: list[str] = []
    real_list = services.control.list

    def counted_list(prefix: str, **kwargs: Any) -> Any:
        for item in real_list(prefix, **kwargs):
            read.append(item.name)
            yield item

    monkeypatch.setattr(services.control, "list", counted_list)
    assert sorted(m.batch_id for m in batch_index.open_batches(services.control, destination_id="acme")) == ids
    assert len(read) == 2
    assert api.get("/api/destinations/acme/status").json()["counts"]["pending"] == 2
    assert sorted(listed(api, destination_id="acme", state="pending")) == ids
    assert len(run_export_pass(services).batches) == 2  # the pass reads every destination's
