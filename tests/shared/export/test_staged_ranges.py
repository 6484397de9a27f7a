"""A batch is staged in one blob whatever the number of partitions it touches (issue 13, item 2): each
partition is a byte range of it, which the export reads and checks on its own.

Before, intake wrote one staged blob per partition, one after another: a 200-partition POST cost 200 Put
Blobs (about 5x the time of a 2-partition POST of the same size).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control import batches
from shared.control.batch_state import BatchState
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import data_files, make_destination, manifests, post_batch, read_blob
from tests.support.azurite import Azurite

SMALL_BLOCKS = 64 * 1024  # blocks that cut through partitions, and partitions that span blocks


def hour_of(record: dict[str, Any]) -> str:
    """The partition a Mixpanel-shaped event belongs in, from its own time (milliseconds since the epoch)."""
    moment = datetime.fromtimestamp(record["properties"]["time"] / 1000, UTC)
    return moment.strftime("date=%Y-%m-%d/hour=%H")


def staged_names(services: Services) -> list[str]:
    return sorted(item.name for item in services.control.list(batches.STAGED_PREFIX))


def landed_by_partition(container: ContainerClient, batch_id: str) -> dict[str, list[dict[str, Any]]]:
    [manifest] = [m for m in manifests(container) if m["batch_id"] == batch_id]
    landed: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        assert f"/{entry['partition']}/" in entry["name"]
        lines = read_blob(container, entry["name"]).splitlines()
        assert len(lines) == entry["records"]
        landed.setdefault(entry["partition"], []).extend(orjson.loads(line) for line in lines)
    return landed


def test_a_300_partition_batch_is_staged_in_one_blob_and_lands_each_record_once_in_its_partition(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.control.store.STAGE_BLOCK_BYTES", SMALL_BLOCKS)
    dest = make_destination(api, azurite, fresh_container, compression="gzip")
    records = list(sample_data.events(900, seed=13, hours=300, shapes=("mixpanel",)))
    batch_id = post_batch(api, dest, records)["batch_id"]

    state = batches.get_state(services.control, batch_id)
    assert len(state.partitions) == 300
    [blob] = staged_names(services)  # one staged blob for 300 partitions
    assert {p.blob for p in state.partitions} == {blob}
    properties = services.control.container.get_blob_client(blob).get_blob_properties()
    assert properties.size == state.staged_bytes == sum(p.bytes for p in state.partitions)
    ends = [0] + [p.offset + p.bytes for p in state.partitions if p.offset is not None]
    assert [p.offset for p in state.partitions] == ends[:-1]  # end to end, in key order, nothing between
    committed, uncommitted = services.control.container.get_blob_client(blob).get_block_list("all")
    assert len(committed) == -(-state.staged_bytes // SMALL_BLOCKS) > 3 and uncommitted == []

    assert run_export_pass(services).landed == 1
    landed = landed_by_partition(fresh_container, batch_id)
    assert len(landed) == 300 and len(data_files(fresh_container)) == 300
    assert all(hour_of(record) == partition for partition, rows in landed.items() for record in rows)
    ids = Counter(record["properties"]["$insert_id"] for rows in landed.values() for record in rows)
    assert ids == Counter(record["properties"]["$insert_id"] for record in records)  # every record, once


def change_byte(data: bytes, at: int) -> bytes:
    """The same bytes with one digit or letter changed (still valid JSON lines, of the same length)."""
    while not chr(data[at]).isalnum():
        at += 1
    replacement = b"7" if chr(data[at]).isdigit() and data[at] != ord("7") else b"8"
    if chr(data[at]).isalpha():
        replacement = b"q" if data[at] != ord("q") else b"z"
    return data[:at] + replacement + data[at + 1:]


@pytest.mark.parametrize("damage", ["a byte changed in the middle partition", "blob cut short in it"])
def test_a_changed_byte_range_is_refused_at_export_with_staged_data_changed(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, damage: str,
) -> None:
    """The export checks each partition's range against the SHA-256 its state committed: staged bytes
    changed after the 202 (of one partition only, the others intact) fail the batch, visibly."""
    dest = make_destination(api, azurite, fresh_container)
    bid = post_batch(api, dest, list(sample_data.events(300, seed=5, hours=3, shapes=("mixpanel",))))["batch_id"]
    first, middle, _ = batches.get_state(services.control, bid).partitions
    assert middle.offset is not None and middle.offset == first.bytes
    staged = b"".join(services.control.stream(middle.blob))
    if damage.startswith("a byte"):
        tampered = change_byte(staged, middle.offset + middle.bytes // 2)
        assert len(tampered) == len(staged) and tampered != staged
    else:
        tampered = staged[:middle.offset + middle.bytes // 2]  # the last partition's range is past the end now
    services.control.put_bytes(middle.blob, tampered)

    summary = run_export_pass(services)
    assert (summary.failed, summary.landed) == (1, 0), summary.to_json()
    failed = batches.get_state(services.control, bid)
    assert failed.state == "failed" and failed.last_error is not None
    assert failed.last_error.code == "staged_data_changed"
    assert "not the ones it was accepted with" in failed.last_error.message
    assert manifests(fresh_container) == []


def test_a_batch_staged_before_byte_ranges_exports_its_blobs_whole(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    """States written before issue 13 name one blob per partition and no offset: the export reads each blob
    whole, as it did, and still checks its SHA-256."""
    dest = make_destination(api, azurite, fresh_container, compression="none")
    records = list(sample_data.events(120, seed=9, hours=4, shapes=("mixpanel",)))
    bid = post_batch(api, dest, records)["batch_id"]
    state = batches.get_state(services.control, bid)
    [shared_blob] = {p.blob for p in state.partitions}
    old_partitions = []
    for index, partition in enumerate(state.partitions):  # the layout intake wrote before: a blob each
        name = shared_blob.replace("records.jsonl", f"{index:05d}.jsonl")
        services.control.put_bytes(name, b"".join(services.control.stream(partition.blob, *partition.byte_range())))
        old_partitions.append(partition.model_copy(update={"blob": name, "offset": None}))
    document = {**state.to_json(), "partitions": [p.model_dump(mode="json") for p in old_partitions]}
    assert all("offset" not in p for p in document["partitions"])  # the document as it was then
    batches.save_state(services.control, BatchState.from_json(document))
    services.control.delete(shared_blob)

    assert run_export_pass(services).landed == 1
    landed = landed_by_partition(fresh_container, bid)
    assert len(landed) == 4
    assert all(hour_of(record) == partition for partition, rows in landed.items() for record in rows)
    assert sorted(r["properties"]["$insert_id"] for rows in landed.values() for r in rows) == sorted(
        r["properties"]["$insert_id"] for r in records)
