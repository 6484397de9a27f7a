"""A destination that coalesces and waits (`max_delay_seconds` > 0) gets one export message per record type from
an instance while one is on its way, not one per batch (`shared.control.export_queue.Covers`); that message's
handling exports every batch it covered, also when its own batch landed before, and a covered batch that still
waits after it gets a message of its own. Through the API and Azurite's queue service."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control.batches import now_utc
from shared.control.export_queue import COVER_MARGIN_SECONDS, Covers, ExportUnit
from shared.export.queued import handle_message
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export.test_queue_path import events, queue_of, status
from tests.shared.export_helpers import jsonl_records, make_destination, manifests, post_batch
from tests.support.azurite import Azurite

WAITS = {"max_delay_seconds": 30, "target_file_mb": 128}


def later(seconds: float) -> Callable[[], datetime]:
    return lambda: now_utc() + timedelta(seconds=seconds)


def unit(batch: dict[str, object]) -> bytes:
    return ExportUnit(batch_id=str(batch["batch_id"]), destination_id="acme").encode()


def test_a_message_on_its_way_covers_a_batch_due_no_earlier() -> None:
    covers = Covers()
    assert not covers.covered("acme", "events", now=100, due_at=130)
    covers.sent("acme", "events", 130)
    assert covers.covered("acme", "events", now=110, due_at=140)
    assert not covers.covered("acme", "events", now=130 - COVER_MARGIN_SECONDS / 2, due_at=160)  # about to show
    assert not covers.covered("acme", "events", now=95, due_at=125)  # this batch is due before the message shows
    assert not covers.covered("acme", "profiles", now=110, due_at=140)
    assert not covers.covered("other", "events", now=110, due_at=140)


def test_the_batches_of_a_destination_that_waits_share_one_message_and_land_in_one_run(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    make_destination(api, azurite, fresh_container, coalesce=WAITS)
    posted = [post_batch(api, "acme", events(3, start=10 * i)) for i in range(5)]
    profiles = post_batch(api, "acme", list(sample_data.profiles(2)), record_type="profiles")  # a type of its own
    assert queue_of(services).approximate_length() == 2  # was one per batch: six
    handled = handle_message(services, unit(posted[0]), clock=later(31))
    assert handled.outcome == "landed"
    landed = [status(api, b) for b in posted]
    assert {b["state"] for b in landed} == {"landed"} and len({b["run_id"] for b in landed}) == 1
    # the events' message exported the events; the profiles wait for their own message
    assert [m["type"] for m in manifests(fresh_container)] == ["events"]
    assert status(api, profiles)["state"] == "pending"
    assert handle_message(services, unit(profiles), clock=later(31)).outcome == "landed"
    assert sorted(m["type"] for m in manifests(fresh_container)) == ["events", "profiles"]
    assert len(jsonl_records(fresh_container)) == 15 + 2


def test_a_message_whose_batch_landed_before_it_still_exports_the_batches_it_covered(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """Its batch was exported early (here a pass; also a run that closed at its target size): the message reads
    the destination's markers newer than its batch and exports those still open, and only those."""
    make_destination(api, azurite, fresh_container, coalesce=WAITS)
    first = post_batch(api, "acme", events(2))
    assert run_export_pass(services, clock=later(31)).landed == 1
    covered = [post_batch(api, "acme", events(2, start=10 * (i + 1))) for i in range(3)]
    assert queue_of(services).approximate_length() == 1  # the first batch's message covers them
    handled = handle_message(services, unit(first), clock=later(62))
    assert handled.outcome == "done"
    assert {status(api, b)["state"] for b in covered} == {"landed"}
    assert status(api, first)["total_attempts"] == 1  # not exported again
    assert len(jsonl_records(fresh_container)) == 8


def test_a_covered_batch_that_still_waits_gets_the_next_message(
        api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient) -> None:
    """A run closes at its target size and the batches after it wait for their own delay: one of them is sent
    a message visible when it is due, since none was sent for it at intake."""
    make_destination(api, azurite, fresh_container, coalesce={"max_delay_seconds": 30, "target_file_mb": 1})
    big = [{"event": "e", "ts": 1763629200 + i, "padding": "x" * 2000} for i in range(300)]  # 0.6 MB staged
    posted = [post_batch(api, "acme", big) for _ in range(2)]
    time.sleep(1.5)  # the third comes later: when the first two are due, it has not waited its 30 seconds yet
    posted.append(post_batch(api, "acme", big))
    queue = queue_of(services)
    assert queue.approximate_length() == 1
    handled = handle_message(services, unit(posted[0]), clock=lambda: datetime.fromisoformat(
        str(status(api, posted[0])["created_at"])) + timedelta(seconds=30.5))
    states = [status(api, b)["state"] for b in posted]
    assert handled.outcome == "landed" and states == ["landed", "landed", "pending"]  # a run of two, 1.2 MB
    assert handled.sent_on_after is None
    assert queue.approximate_length() == 2  # the third batch's own message, visible when it is due
