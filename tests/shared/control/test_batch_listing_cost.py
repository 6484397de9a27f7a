"""GET /api/batches filters read the batch index, not every state (issue 11, item 7).

Control storage holds 10,000 batch states of other destinations; a filtered listing costs a few storage calls,
counted on the wire (azure-core's raw_request_hook sees every request), not timed. Before the index, the same
`?destination_id=nope&limit=1` read one page of one state per call: 10,000 calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.storage.blob import ContainerClient

from shared.control import batch_index, batches, cursors
from shared.control.batch_state import BatchState, iso
from shared.control.store import ControlStore
from tests.support.azurite import Azurite

OTHER_BATCHES = 10_000
FIXTURES = Path(__file__).parent / "fixtures"


class CountingControl:
    """A ControlStore whose storage requests are counted."""

    def __init__(self, azurite: Azurite, container: str):
        self.calls = 0
        self.client = ContainerClient.from_connection_string(
            azurite.connection_string, container, raw_request_hook=self._count)
        self.store = ControlStore(self.client)
        self.store.ensure_container()

    def _count(self, request: Any) -> None:
        self.calls += 1

    def listed(self, **query: Any) -> tuple[dict[str, Any], int]:
        before = self.calls
        page = batches.list_batches(self.store, **{"state": None, "destination_id": None, "limit": 100,
                                                   "continuation": None, **query})
        return page, self.calls - before


def _old_landed_batches(created: datetime) -> Iterator[tuple[str, dict[str, str]]]:
    """10,000 landed batches of 100 other destinations: their states' names and listing metadata."""
    for n in range(OTHER_BATCHES):
        batch_id = f"b{(created + timedelta(seconds=n)).strftime('%Y%m%d%H%M%S')}{n:017d}"
        yield batch_id, {"state": "landed", "destination": f"other-{n % 100:03d}", "type": "events",
                         "created": iso(created)}


@pytest.fixture(scope="module")
def crowded(azurite: Azurite) -> Iterator[str]:
    """A control container holding 10,000 landed batches of 100 other destinations (written once per module:
    Azurite takes about 25 s). Their index markers are written for one of those destinations only: a filtered
    listing reads one destination's or one state's markers, and others' do not change what it reads."""
    name = f"ctl-{uuid.uuid4().hex[:16]}"
    client = ContainerClient.from_connection_string(azurite.connection_string, name)
    client.create_container()
    created = datetime(2026, 11, 1, tzinfo=UTC)

    def write(entry: tuple[str, dict[str, str]]) -> None:
        batch_id, meta = entry
        client.upload_blob(f"states/{batch_id}.json", b"{}", metadata=meta, overwrite=True)
        if meta["destination"] == "other-007":  # its marker, as shared.control.batch_index lays them out
            marker = batch_index.markers(batch_id, "other-007", "landed", created)[1]
            client.upload_blob(marker, b"", metadata=meta, overwrite=True)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(write, _old_landed_batches(created)))
    yield name
    client.delete_container()


@pytest.fixture
def control(azurite: Azurite, crowded: str) -> Iterator[CountingControl]:
    counting = CountingControl(azurite, crowded)
    counting.client.upload_blob(batch_index.BACKFILL, orjson.dumps({"complete": True}), overwrite=True)
    cursors.seal(counting.store, cursors.Place("any", "any"), "any")  # the cursor key: read once per process
    # Three batches of 'acme' saved by the app itself: pending, failed, landed.
    saved = []
    for name in ("pending_staged_events", "failed_sas_expired", "landed_profiles"):
        state = BatchState.from_json(orjson.loads((FIXTURES / f"{name}.json").read_bytes()))
        saved.append(state.changed(destination_id="acme"))
        batches.save_state(counting.store, saved[-1])
    yield counting
    for state in saved:  # the next test starts from the same three
        counting.client.delete_blob(batches.state_blob(state.batch_id))
        for blob in counting.client.list_blobs(name_starts_with="index/"):
            if blob.name.endswith(state.batch_id):
                counting.client.delete_blob(blob.name)


def test_a_filtered_listing_costs_a_few_storage_calls_among_10000_batches(control: CountingControl) -> None:
    page, calls = control.listed(destination_id="nope", limit=1)
    assert page == {"batches": [], "next": None}
    assert calls <= 3, f"{calls} storage calls for an empty filtered page among {OTHER_BATCHES:,} batches"

    page, calls = control.listed(destination_id="acme")
    assert sorted(b["state"] for b in page["batches"]) == ["failed", "landed", "pending"]
    assert {b["destination_id"] for b in page["batches"]} == {"acme"} and calls <= 3

    page, calls = control.listed(state="pending")
    assert [b["destination_id"] for b in page["batches"]] == ["acme"] and calls <= 3

    page, calls = control.listed(state="failed", destination_id="acme")
    assert [b["state"] for b in page["batches"]] == ["failed"] and calls <= 3

    page, calls = control.listed(destination_id="other-007", limit=50)
    assert len(page["batches"]) == 50 and page["next"] and calls <= 3
    assert {b["destination_id"] for b in page["batches"]} == {"other-007"}


def test_a_listing_follows_the_state_as_it_changes(control: CountingControl) -> None:
    pending = next(b for b in control.listed(destination_id="acme")[0]["batches"] if b["state"] == "pending")
    state = batches.get_state(control.store, pending["batch_id"])
    batches.retry_batch(control.store, state.batch_id)  # pending -> pending: still listed once, as pending
    failed = next(b for b in control.listed(state="failed")[0]["batches"])
    batches.retry_batch(control.store, failed["batch_id"])  # failed -> pending
    assert control.listed(state="failed")[0]["batches"] == []
    assert sorted(b["batch_id"] for b in control.listed(state="pending")[0]["batches"]) == sorted(
        [pending["batch_id"], failed["batch_id"]])
