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
    options = BenchOptions(events=EVENTS, batch_size=500, memory_events=500, intake_memory_mib=0.25)

    results = run_benchmark(azurite.connection_string, results_path, options, say=said.append)

    assert orjson.loads(results_path.read_bytes())["variants"] == results["variants"]
    assert [row["variant"] for row in results["variants"]] == ["floor (gzip)", "jsonl+gzip", "csv+gzip"]
    for row in results["variants"]:
        assert row["events"] == EVENTS  # for the exports: the records their manifests list as landed
        assert row["events_per_s"] > 0 and row["input_mb_per_s"] > 0 and row["output_bytes"] > 0
        assert row["peak_rss_mb"] > 0 and row["ratio_to_floor"] > 0
    exports = results["variants"][1:]
    assert all(row["batches"] == EVENTS // 500 and row["secret_reads"] >= 1 for row in exports)
    assert results["intake"]["records"] == 2 * EVENTS and results["intake"]["records_per_s"] > 0
    assert sorted((m["format"], m["events"]) for m in results["memory"]) == [
        ("csv", 500), ("csv", EVENTS), ("jsonl", 500), ("jsonl", EVENTS)]
    assert all(m["peak_rss_mb"] > 0 for m in results["memory"])
    assert {check["target"].split(" ")[0] for check in results["targets"]} >= {"jsonl+gzip", "csv+gzip", "export"}
    assert [row["kind"] for row in results["intake_memory"]] == ["ndjson", "ndjson+gzip", "json-array"]
    assert all(row["status"] == 202 and row["growth_mb"] is not None for row in results["intake_memory"])
    assert "ratio to floor" in said[-1] and "intake memory: json-array" in said[-1]  # the table was printed

    # Nothing of the run is left behind in the storage account.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert [c.name for c in service.list_containers(name_starts_with="bench-")] == []
    assert [c.name for c in service.list_containers(name_starts_with="intmem-")] == []
