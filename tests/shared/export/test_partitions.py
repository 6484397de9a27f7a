"""A batch that touches hundreds of hour partitions (a backfill), by hour and by day (issue 13, items 1 and 3):
one file per destination partition, each holding exactly that partition's records, and one manifest."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export.runner import run_export_pass
from shared.intake.event_time import epoch_microseconds, find_event_time, partition_key_for_microseconds
from shared.services import Services
from tests.shared.export_helpers import csv_rows, data_files, make_destination, manifests, post_batch, read_blob
from tests.support.azurite import Azurite

HOURS = 300


def hour_of(record: dict[str, Any]) -> str:
    found = find_event_time(record)
    assert found is not None
    return partition_key_for_microseconds(epoch_microseconds(found[1]))


def day_of(record: dict[str, Any]) -> str:
    return hour_of(record).split("/hour=")[0]


def directory(name: str) -> str:
    return name.removeprefix("events/").rsplit("/", 1)[0]


@pytest.mark.parametrize(("partition", "key_of", "files"), [("hour", hour_of, HOURS), ("day", day_of, 13)])
def test_a_backfill_batch_lands_one_file_per_partition_with_that_partitions_records(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, partition: str,
    key_of: Any, files: int,
) -> None:
    records = list(sample_data.events(2 * HOURS, hours=HOURS))  # two an hour over 12.5 days
    make_destination(api, azurite, fresh_container, partition=partition)
    assert api.get("/api/destinations/acme").json()["partition"] == partition
    batch_id = post_batch(api, "acme", records)["batch_id"]

    assert run_export_pass(services).landed == 1
    names = data_files(fresh_container)
    assert len(names) == files and all(name.endswith("-0000.jsonl.gz") for name in names)
    expected = Counter(orjson.dumps(r) for r in records)
    landed: Counter[bytes] = Counter()
    for name in names:
        lines = [orjson.loads(line) for line in read_blob(fresh_container, name).splitlines()]
        assert {key_of(record) for record in lines} == {directory(name)}, name
        landed.update(orjson.dumps(record) for record in lines)
    assert landed == expected  # every record once, in the partition of its event time

    [manifest] = manifests(fresh_container)
    assert manifest["batch_id"] == batch_id and manifest["records"] == len(records)
    assert sorted(f["name"] for f in manifest["files"]) == names
    assert {f["partition"] for f in manifest["files"]} == {directory(name) for name in names}


def test_a_day_file_in_csv_has_the_columns_of_every_hour_it_gathers(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    records = list(sample_data.events(48, hours=48, shapes=("clevertap", "mixpanel", "segment")))
    make_destination(api, azurite, fresh_container, partition="day", format="csv")
    post_batch(api, "acme", records)
    assert run_export_pass(services).landed == 1
    names = data_files(fresh_container)
    assert [directory(name) for name in names] == sorted({day_of(r) for r in records})
    rows = [row for name in names for row in csv_rows(fresh_container, name)]
    assert len(rows) == len(records)
    headers = {tuple(csv_rows(fresh_container, name)[0]) for name in names}
    assert all({"identity", "properties.distinct_id", "userId"} <= set(header) for header in headers)  # 3 shapes
