"""`make bench` at a small size, so that the benchmark cannot rot: its numbers come out and the data lands.

Only that the numbers exist is asserted, never their values: speed is measured by `make bench`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from azure.storage.blob import BlobServiceClient

from bench.run_bench import BenchOptions, run_benchmark
from tests.support.azurite import Azurite

EVENTS = 2_000


def test_the_benchmark_measures_every_variant_and_the_data_lands(azurite: Azurite, tmp_path: Path) -> None:
    said: list[str] = []
    results_path = tmp_path / "results" / "latest.json"
    options = BenchOptions(events=EVENTS, batch_size=500, memory_events=500, intake_memory_mib=0.25,
                           backfill_events=200, backfill_hours=20, floor_concurrency=4, small_posts=8,
                           small_destinations=2, freshness_rate=400, freshness_seconds=2, freshness_steps=(800,),
                           freshness_destinations=2, scale_batches=8)

    results = run_benchmark(azurite.connection_string, results_path, options, say=said.append)

    assert orjson.loads(results_path.read_bytes())["variants"] == results["variants"]
    assert [row["variant"] for row in results["variants"]] == ["floor (gzip)", "jsonl+gzip", "csv+gzip", "parquet+zstd",
                                                               "jsonl+zstd"]
    for row in results["variants"]:
        assert row["events"] == EVENTS  # for the exports: the records their manifests list as landed
        assert row["events_per_s"] > 0 and row["input_mb_per_s"] > 0 and row["output_bytes"] > 0
        assert row["peak_rss_mb"] > 0 and row["ratio_to_floor"] > 0
    exports = results["variants"][1:]
    assert all(row["batches"] == EVENTS // 500 and row["secret_reads"] >= 1 for row in exports)
    assert results["intake"]["records"] == len(exports) * EVENTS and results["intake"]["records_per_s"] > 0
    assert sorted((m["format"], m["events"]) for m in results["memory"]) == [
        ("csv", 500), ("csv", EVENTS), ("jsonl", 500), ("jsonl", EVENTS), ("parquet", 500), ("parquet", EVENTS)]
    assert all(m["peak_rss_mb"] > 0 for m in results["memory"])
    assert {check["target"].split(" ")[0] for check in results["targets"]} >= {"jsonl+gzip", "csv+gzip", "export",
                                                                               "parquet+zstd", "jsonl+zstd"}
    fresh = results["freshness"]  # issue 14: through the export queue, every batch landed, latencies measured
    assert fresh["load"]["posts"] == 8 and 0 < fresh["load"]["p50_s"] <= fresh["load"]["p99_s"]
    coalesced = fresh["load_coalesced"]  # the same load to destinations that coalesce at once
    assert coalesced["coalesce"] and coalesced["posts"] == 8 and 0 < coalesced["p50_s"] <= coalesced["p99_s"]
    assert [row["workers"] for row in fresh["scale"]] == [1, 2, 4]
    assert all(row["batches"] == 8 and row["events_per_s"] > 0 for row in fresh["scale"])
    assert any(check["target"].startswith("freshness") for check in results["targets"])
    assert [row["kind"] for row in results["intake_memory"]] == ["ndjson", "ndjson+gzip", "json-array"]
    assert all(row["status"] == 202 and row["growth_mb"] is not None for row in results["intake_memory"])
    # Issue 13's shapes (tests/bench/test_backfill_and_small_batches.py checks what they land).
    backfill = results["backfill"]
    assert (backfill["events"], backfill["export"]["events"], backfill["floor"]["events"]) == (200, 200, 200)
    assert backfill["export"]["files"] == backfill["floor"]["files"] == backfill["staged_partitions"] >= 20
    assert [(row["posts"], row["export"]["events"]) for row in results["small_batches"]] == [(8, 800)]
    assert results["small_batches"][0]["coalesced"] is False  # not asked for
    targets = " ".join(check["target"] for check in results["targets"])
    assert "20-hour jsonl+gzip export >= 0.7x its floor" in targets and "small batches: POSTs/s" in targets
    assert "ratio to floor" in said[-1] and "intake memory: json-array" in said[-1]  # the table was printed
    assert "20-hour jsonl+gzip" in said[-1] and "small batches, one batch at a time" in said[-1]

    # Nothing of the run is left behind in the storage account.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert [c.name for c in service.list_containers(name_starts_with="bench-")] == []
    assert [c.name for c in service.list_containers(name_starts_with="intmem-")] == []
