"""Two requests with one Idempotency-Key and different bodies, at the same moment (issue 11, item 2).

One is answered 202, the other 409; the batch answered 202 must land exactly the records of the body it
was answered for. Before staging names were per request, both requests wrote the same staged blobs, and in
16 of 20 rounds the 202 batch landed the other body's records (the accepted ones were lost).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control import batches
from shared.export.runner import run_export_pass
from shared.services import Services
from shared.settings import Settings
from tests.reliability.fault_helpers import assert_landed_exactly_once, control_names, report, scaled
from tests.shared.export_helpers import data_files, make_destination, manifests, post_batch, read_blob
from tests.support.azurite import Azurite

RECORDS = 20_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_request_bytes": 64 * 1024 * 1024})


def body(seed: int) -> tuple[bytes, set[str]]:
    records = list(sample_data.events(scaled(RECORDS), seed=seed, hours=1, shapes=("mixpanel",)))
    return sample_data.ndjson(records), {r["properties"]["$insert_id"] for r in records}


def post_both(api: httpx.Client, dest: str, key: str, bodies: list[bytes]) -> list[httpx.Response]:
    """POST every body at once (a barrier releases the threads together) with the same Idempotency-Key."""
    answers: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        start.wait()
        answers[index] = api.post(f"/api/destinations/{dest}/batches", params={"type": "events"},
                                  content=bodies[index],
                                  headers={"content-type": "application/x-ndjson", "Idempotency-Key": key})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def landed_ids(container: ContainerClient, batch_id: str) -> set[str]:
    [manifest] = [m for m in manifests(container) if m["batch_id"] == batch_id]
    return {orjson.loads(line)["properties"]["$insert_id"] for entry in manifest["files"]
            for line in read_blob(container, entry["name"]).splitlines() if line}


def test_the_batch_answered_202_lands_its_own_body_when_two_requests_race_one_key(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    rounds = 10
    accepted: dict[str, set[str]] = {}
    for round_ in range(rounds):
        (first, first_ids), (second, second_ids) = body(1000 + round_), body(2000 + round_)
        answers = post_both(api, dest, f"race-{round_}", [first, second])
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [202, 409], [a.text[:300] for a in answers]
        winner = 0 if answers[0].status_code == 202 else 1
        batch_id = answers[winner].json()["batch_id"]
        accepted[batch_id] = (first_ids, second_ids)[winner]
        state = batches.get_state(services.control, batch_id)
        assert state.body_sha256 != "" and state.records == len(accepted[batch_id])
        # The loser leaves nothing staged: only the winner's blobs, exactly those its state names.
        assert control_names(services, f"staged/{batch_id}/") == sorted(p.blob for p in state.partitions)

    while run_export_pass(services).landed:
        pass
    wrong = [b for b, ids in accepted.items() if landed_ids(fresh_container, b) != ids]
    assert wrong == [], f"{len(wrong)} of {rounds} batches answered 202 landed the other body's records"
    counts = assert_landed_exactly_once(fresh_container, {b: len(ids) for b, ids in accepted.items()})
    report("staging_race_one_key_two_bodies", rounds=rounds, wrong_body_landed=len(wrong), **counts)


def test_staged_records_that_are_not_the_ones_committed_are_not_exported(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    """The export checks each staged blob against the SHA-256 its state committed: records written there by
    anything else (a writer from before staging names were per request, a bug) fail the batch, visibly."""
    dest = make_destination(api, azurite, fresh_container)
    records = list(sample_data.events(200, seed=5, hours=1, shapes=("mixpanel",)))
    bid = post_batch(api, dest, records)["batch_id"]
    [partition] = batches.get_state(services.control, bid).partitions
    others = list(sample_data.events(200, seed=6, hours=1, shapes=("mixpanel",)))
    services.control.put_bytes(partition.blob, sample_data.ndjson(others))

    summary = run_export_pass(services)
    assert (summary.failed, summary.landed) == (1, 0), summary.to_json()
    failed = batches.get_state(services.control, bid)
    assert failed.state == "failed" and failed.last_error is not None
    assert failed.last_error.code == "staged_data_changed"
    assert "not the ones it was accepted with" in failed.last_error.message
    assert manifests(fresh_container) == [] and data_files(fresh_container) == []
