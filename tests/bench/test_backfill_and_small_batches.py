"""Issue 13's two shapes of `make bench` at a tiny size: their rows come out and every event lands exactly once.

The 4,000-hour shape here is 400 events over 40 hours in batches of 200 (a file per batch per hour), the
small-batch shape 40 POSTs of 100 events to 4 destinations from 8 clients. Only that the numbers exist is
asserted, never their values: speed is measured by `make bench`.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from bench import backfill, small_batches
from bench.runs import BenchOptions, Run
from bench.workload import IntakeServer
from scripts import sample_data
from tests.support.azurite import Azurite


@pytest.fixture
def run(azurite: Azurite, tmp_path: Path) -> Iterator[Run]:
    # keep: the shapes leave their containers for the test to read; the fixture removes them.
    options = BenchOptions(events=400, batch_size=200, backfill_hours=40, floor_concurrency=8, small_posts=40,
                           small_destinations=4, small_clients=8, intake_memory_mib=0, keep=True,
                           freshness_rate=0, scale_batches=0)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    bench_run = Run(service, azurite.connection_string, options, tmp_path, say=lambda _: None)
    yield bench_run
    bench_run.clean_up()
    assert [c.name for c in service.list_containers(name_starts_with=f"bench-{bench_run.run_id}")] == []


def landed_ids(container: ContainerClient, prefix: str = "bench/") -> list[str]:
    """The `$insert_id` of every record in the container's data files, one entry per record landed."""
    ids = []
    for blob in container.list_blobs(name_starts_with=prefix):
        if "/_manifests/" in blob.name:
            continue
        text = gzip.decompress(container.download_blob(blob.name).readall())
        ids += [orjson.loads(line)["properties"]["$insert_id"] for line in text.splitlines()]
    return ids


def sent_ids(count: int, hours: int) -> list[str]:
    return sorted(event["properties"]["$insert_id"]
                  for event in sample_data.events(count, seed=7, hours=hours, shapes=("mixpanel",)))


def test_the_backfill_shape_measures_export_and_floor_and_every_event_lands_once(run: Run) -> None:
    with IntakeServer() as server:
        variant, posted = backfill.stage_backfill(run, server)

    row = backfill.measure_backfill(run, variant, posted, two_hour_events_per_s=10_000.0,
                                    two_hour_intake_mb_per_s=10.0)

    assert (row["events"], row["batches"], row["hours"]) == (400, 2, 40)
    assert row["staged_partitions"] >= 40  # an hour per partition, and a batch per file
    for part in (row["floor"], row["export"]):
        assert part["events"] == 400 and part["files"] == row["staged_partitions"]
        assert part["events_per_s"] > 0 and part["cpu_ms_per_file"] > 0 and part["peak_rss_mb"] > 0
    assert len(row["floor"]["runs_events_per_s"]) == 2
    export = row["export"]
    assert export["ratio_to_floor"] > 0 and export["ratio_to_two_hour"] > 0 and row["intake"]["ratio_to_two_hour"] > 0
    assert export["manifests"] == 2
    # The product's files and the floor's hold the same bytes before gzip: every event once in each.
    assert sorted(landed_ids(variant.destination)) == sent_ids(400, 40)
    floor = run.service.get_container_client(f"bench-{run.run_id}-bffloor1-out")
    assert sorted(landed_ids(floor, prefix="floor/")) == sent_ids(400, 40)
    checks = backfill.targets(row, 250)
    assert len(checks) == 4 and all(isinstance(check["met"], bool) for check in checks)
    assert "export" in "\n".join(backfill.format_row(row))


def test_the_small_batch_shape_measures_posts_and_export_and_every_event_lands_once(run: Run) -> None:
    run.options.coalesce = True  # the product may not take it yet: then the row says so

    rows = small_batches.measure_small_batches(run)

    row = rows[-1]
    assert row["coalesce_requested"] is True and isinstance(row["coalesced"], bool)
    assert len(rows) == (2 if row["coalesced"] else 1)
    for each in rows:
        assert (each["posts"], each["destinations"], each["clients"], each["events"]) == (40, 4, 8, 4_000)
        intake, export = each["intake"], each["export"]
        assert intake["posts_per_s"] > 0 and 0 < intake["p50_ms"] <= intake["p99_ms"]
        assert export["events"] == 4_000 and export["batches"] == 40 and export["passes"] >= 1
        assert export["files"] >= 4 and export["batches_per_s"] > 0 and export["events_per_s"] > 0
        assert export["x_before"] > 0
    # Every event once, over the destinations of the last measurement (the coalesced one when there are two).
    slug = "small"
    containers = [run.service.get_container_client(f"bench-{run.run_id}-{slug}-{n:03d}") for n in range(4)]
    assert sorted(i for c in containers for i in landed_ids(c)) == sent_ids(4_000, small_batches.HOURS)
    checks = small_batches.targets(rows, 250)
    assert [check["target"].split(":")[0] for check in checks][:2] == ["small batches", "small batches"]
    assert "POSTs/s" in "\n".join(small_batches.format_rows(rows))
