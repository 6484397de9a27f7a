"""`make bench`: the export pass's throughput and memory against the floor, on one Azurite, in one run.

1. generate N deterministic events (CleverTap, Mixpanel and Segment shapes: nested properties,
   mixed types, unicode) and post them in batches to the product's HTTP intake (timed: intake
   throughput), once per export variant;
2. time, each in a process of its own (peak RSS per run): the floor (download the staged bytes,
   one zlib.compressobj, staged-block upload, nothing else), the product's export pass to a SAS
   destination as jsonl+gzip and as csv+gzip, then the floor again (the faster floor counts);
3. stage one batch of `--memory-events` and one of N events and export each (peak RSS must not
   grow with the batch size);
4. issue 13's shapes: the events spread over 4,000 hours against their own floor (bench.backfill),
   and many customers' 100-event batches from 8 clients (bench.small_batches); then the intake-memory
   rows (bench.intake_memory);
5. print the table and write it as JSON (default bench/results/latest.json).

`run_benchmark(connection_string, results_path, options)` is the entry point for tests; `main()`
parses the command line and defaults to the Azurite of `make azurite-start` (127.0.0.1:10000).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from azure.storage.blob import BlobServiceClient

from bench import backfill, freshness, intake_memory, small_batches
from bench.runs import MB, REPO_ROOT, BenchOptions, Run, run_worker, storage_process
from bench.workload import (
    IntakeServer,
    Variant,
    container_sas_url,
    destination_body,
    event_batches,
    landed,
    stage,
)
from shared.settings import load_settings

DEFAULT_RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
TARGETS = {"jsonl+gzip": 0.7, "csv+gzip": 0.4, "parquet+zstd": 0.6}
RSS_LIMIT_MB = 250
RSS_GROWTH_LIMIT_MB = 50
# Issue 15's rows: Parquet (typed columns) and JSONL, each with zstd. A variant is staged as any other (a jsonl or
# parquet destination with gzip), then its destination is PUT with these settings before the export.
FORMAT_SETTINGS = {"parquet+zstd": {"format": "parquet", "compression": "zstd", "parquet_columns": "typed"},
                   "jsonl+zstd": {"format": "jsonl", "compression": "zstd"}}
MEMORY_COMPRESSION = {"jsonl": "gzip", "csv": "gzip", "parquet": "zstd"}
JSONL_ZSTD_TARGET = 0.9  # jsonl+zstd's events/s, x jsonl+gzip's
ISSUE_15_RSS_LIMIT_MB = 300


def measure_export(run: Run, variant: Variant, staged_bytes: int) -> dict[str, Any]:
    result = run_worker({"kind": "export", "settings": variant.settings_overrides}, run.storage,
                        run.profile(variant.destination_id))
    found = landed(variant.destination)
    records, output = found.records, found.bytes
    if records != variant.intake_records or result["summary"]["landed"] != len(variant.batch_ids):
        raise RuntimeError(f"{variant.name}: {records} of {variant.intake_records} records landed "
                           f"({result['summary']})")
    return _row(variant.name, records, staged_bytes, output, result) | {
        "batches": len(variant.batch_ids), "secret_reads": result["secret_reads"],
        "secret_reads_per_destination": result["secret_reads"],  # one destination per pass here
    }


def measure_floor(run: Run, source: Variant, staged_bytes: int, attempt: int) -> dict[str, Any]:
    settings = load_settings(**source.settings_overrides)
    container = f"bench-{run.run_id}-floor{attempt}-out"
    run.service.create_container(container)
    run.containers.append(container)
    account_url, token = container_sas_url(run.service, container)
    result = run_worker({
        "kind": "floor", "control_connection": run.connection_string,
        "control_container": settings.control_container, "staged": source.staged_blobs(),
        "destination_url": f"{account_url}/{container}?{token}", "block_bytes": settings.block_bytes,
        "concurrency": settings.upload_concurrency, "gzip_level": settings.gzip_level,
    }, run.storage, run.profile(f"floor-{attempt}"))
    return _row("floor (gzip)", source.intake_records, staged_bytes, result["output_bytes"], result)


def _row(name: str, records: int, staged_bytes: int, output: int, result: dict[str, Any]) -> dict[str, Any]:
    seconds = result["seconds"]
    return {"variant": name, "events": records, "seconds": round(seconds, 3),
            "events_per_s": round(records / seconds), "input_mb_per_s": round(staged_bytes / MB / seconds, 2),
            "peak_rss_mb": result["peak_rss_mb"], "baseline_rss_mb": result["baseline_rss_mb"],
            "output_bytes": output, "cpu_seconds": round(result["cpu_seconds"], 2),
            "storage_cpu_seconds": result["storage_cpu_seconds"]}


# ---------------------------------------------------------------------------------------------
# The run


def stage_all(run: Run, server: IntakeServer, bodies: list[bytes]
              ) -> tuple[list[list[Variant]], dict[tuple[str, int], Variant]]:
    """Stage the events for each throughput variant (batches) and each memory run (one batch each)."""
    options = run.options
    main = [[run.variant("jsonl+gzip", "jsonl", f"jsonl-{r}"), run.variant("csv+gzip", "csv", f"csv-{r}"),
             run.variant("parquet+zstd", "parquet", f"parquet-{r}"), run.variant("jsonl+zstd", "jsonl", f"zst-{r}")]
            for r in range(1, options.repeat + 1)]
    single_limit = max(sum(map(len, bodies)) * 2, 1024 * 1024)  # one POST of every event
    sizes = sorted({min(options.memory_events, options.events), options.events})
    memory = {(fmt, n): run.variant(f"mem-{fmt}-{n}", fmt, f"mem-{fmt}-{n}", max_request_bytes=single_limit)
              for fmt in MEMORY_COMPRESSION for n in sizes}
    for item in (item for group in main for item in group):
        run.say(f"staging {options.events:,} events for {item.destination_id} through the HTTP intake ...")
        stage(server, run.service, item, iter(bodies))
        set_format(server, run.service, item, FORMAT_SETTINGS.get(item.name))
    for (fmt, n), item in memory.items():
        run.say(f"staging one batch of {n:,} events for the {fmt} memory run ...")
        single = b"".join(bodies) if n == options.events else b"".join(
            event_batches(n, n, seed=options.seed, hours=options.hours))
        stage(server, run.service, item, iter([single]))
        set_format(server, run.service, item, {"format": fmt, "compression": MEMORY_COMPRESSION[fmt]})
    return main, memory


def set_format(server: IntakeServer, service: BlobServiceClient, variant: Variant,
               settings: dict[str, str] | None) -> None:
    """PUT the variant's destination again with `settings` (its batches, staged and pending, export with them)."""
    if not settings or settings == {"format": variant.fmt, "compression": "gzip"}:
        return
    server.current = variant.services
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            body = destination_body(service, variant.destination.container_name, variant.fmt, **settings)
            response = client.put(f"/api/destinations/{variant.destination_id}", json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"could not set {settings} on the benchmark destination: {response.text}")
    finally:
        server.current = None


def measure_all(run: Run, main: list[list[Variant]], memory: dict[tuple[str, int], Variant]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    source = main[0][0]  # every variant staged the same bytes
    staged_bytes = source.staged_bytes()
    staged = {"staged_bytes": staged_bytes, "staged_blobs": len(source.staged_blobs())}
    run.say("measuring the floor ...")
    floors = [measure_floor(run, source, staged_bytes, 1)]
    exports: dict[str, list[dict[str, Any]]] = {}
    for group in main:  # floor, exports, floor, ...: a slower spell of the machine touches both
        for item in group:
            run.say(f"measuring the export pass, {item.destination_id} ...")
            exports.setdefault(item.name, []).append(measure_export(run, item, staged_bytes))
        run.say("measuring the floor again ...")
        floors.append(measure_floor(run, source, staged_bytes, len(floors) + 1))
    floor = _best(floors)
    rows = [floor | {"ratio_to_floor": 1.0}] + [
        row | {"ratio_to_floor": round(row["events_per_s"] / floor["events_per_s"], 2)}
        for row in map(_best, exports.values())]
    memory_rows = []
    for (fmt, n), item in memory.items():
        run.say(f"measuring export memory, {fmt}+{MEMORY_COMPRESSION[fmt]}, one batch of {n:,} events ...")
        row = measure_export(run, item, item.staged_bytes())
        memory_rows.append({"format": fmt, "events": n} | {key: row[key] for key in (
            "peak_rss_mb", "baseline_rss_mb", "seconds", "events_per_s", "secret_reads")})
    return rows, memory_rows, staged


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of several runs of one variant, listing every run's events/s."""
    return max(runs, key=lambda row: row["events_per_s"]) | {"runs_events_per_s": [r["events_per_s"] for r in runs]}


def run_benchmark(connection_string: str, results_path: Path, options: BenchOptions | None = None,
                  *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark against the storage account of `connection_string`; write and return the results."""
    options = options or BenchOptions()
    service = BlobServiceClient.from_connection_string(connection_string)
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()

    def progress(text: str) -> None:  # each step with the minutes and seconds the run has taken so far
        elapsed = round(time.monotonic() - started)
        say(f"[{elapsed // 60:2d}:{elapsed % 60:02d}] {text}")

    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        run = Run(service, connection_string, options, Path(work), progress, storage=storage_process(service.url))
        try:
            progress(f"generating {options.events:,} events in batches of {options.batch_size:,} ...")
            bodies = event_batches(options.events, options.batch_size, seed=options.seed, hours=options.hours)
            body_bytes = sum(map(len, bodies))
            with IntakeServer() as server:
                main, memory = stage_all(run, server, bodies)
                del bodies
                staged_backfill = backfill.stage_backfill(run, server) if backfill.backfill_events(run) else None
            rows, memory_rows, staged = measure_all(run, main, memory)
            intake = intake_summary([item for group in main for item in group], body_bytes)
            backfill_row = None if staged_backfill is None else backfill.measure_backfill(
                run, *staged_backfill, two_hour_intake_mb_per_s=intake["mb_per_s"],
                two_hour_events_per_s=next(row["events_per_s"] for row in rows if row["variant"] == "jsonl+gzip"))
            small_rows = small_batches.measure_small_batches(run) if options.small_posts else []
            fresh_row = freshness.measure_freshness(run) if options.freshness_rate else None
            intake_rows = measure_intake_memory(run)
            options_json = options_document(run)
        finally:
            if not options.keep:
                run.clean_up()
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "label": options.label, "bench_seconds": round(time.monotonic() - started),
        # Other work on the machine slows every variant, unevenly: read the ratios with this in mind.
        "load_average_1min": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        "options": options_json,
        "dataset": {"events": options.events, "batches": len(main[0][0].batch_ids), "body_bytes": body_bytes,
                    **staged},
        "intake": intake, "variants": rows, "memory": memory_rows, "intake_memory": intake_rows,
        # Issue 13: the 4,000-hour shape (bench.backfill) and the small-batch shape (bench.small_batches).
        "backfill": backfill_row, "small_batches": small_rows,
        # Issue 14: accept-to-landed through the export queue, and worker processes (bench.freshness).
        "freshness": fresh_row,
        "targets": targets(rows, memory_rows) + intake_targets(intake_rows)
        + (backfill.targets(backfill_row, RSS_LIMIT_MB) if backfill_row else [])
        + (small_batches.targets(small_rows, RSS_LIMIT_MB) if small_rows else [])
        + (freshness.targets(fresh_row) if fresh_row else []),
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    say(format_results(results))
    return results


def options_document(run: Run) -> dict[str, Any]:
    options = run.options
    return {"events": options.events, "batch_size": options.batch_size, "hours": options.hours,
            "memory_events": options.memory_events, "settings": options.settings,
            "backfill_events": backfill.backfill_events(run), "backfill_hours": options.backfill_hours,
            "floor_concurrency": options.floor_concurrency, "small_posts": options.small_posts,
            "small_events_per_post": options.small_events_per_post,
            "small_destinations": options.small_destinations, "small_clients": options.small_clients,
            "coalesce": options.coalesce}


def measure_intake_memory(run: Run) -> list[dict[str, Any]]:
    """The intake-memory rows: one body of each kind posted to a server process of its own (bench.intake_memory)."""
    size = int(run.options.intake_memory_mib * MB)
    if size <= 0:
        return []
    rows = []
    for kind in intake_memory.KINDS:
        run.say(f"measuring intake memory, one {run.options.intake_memory_mib:g} MiB {kind} body ...")
        rows.append(intake_memory.measure(run.connection_string, kind, size, work_dir=run.work_dir))
    return rows


def intake_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"target": f"intake peak RSS growth, {row['kind']} body of {row['inflated_mb']:.0f} MiB <= "
                       f"{row['target']}x the body", "measured": row["ratio"],
             "met": row["status"] == 202 and row["ratio"] <= row["target"]} for row in rows]


def intake_summary(variants: list[Variant], body_bytes: int) -> dict[str, Any]:
    records = sum(v.intake_records for v in variants)
    seconds = sum(v.intake_seconds for v in variants)
    return {"records": records, "batches": sum(len(v.batch_ids) for v in variants), "seconds": round(seconds, 3),
            "records_per_s": round(records / seconds), "mb_per_s": round(body_bytes * len(variants) / MB / seconds, 2)}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor())
    azurite = REPO_ROOT / "node_modules" / "azurite" / "package.json"
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "azurite": orjson.loads(azurite.read_bytes())["version"] if azurite.exists() else None}


def targets(rows: list[dict[str, Any]], memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = [{"target": f"{row['variant']} >= {TARGETS[row['variant']]}x floor", "measured": row["ratio_to_floor"],
               "met": row["ratio_to_floor"] >= TARGETS[row["variant"]]} for row in rows if row["variant"] in TARGETS]
    older = [m for m in memory if m["format"] in ("jsonl", "csv")]
    peaks = [row["peak_rss_mb"] for row in rows if row["variant"] in ("jsonl+gzip", "csv+gzip")] + [
        m["peak_rss_mb"] for m in older]
    checks.append({"target": f"export pass peak RSS < {RSS_LIMIT_MB} MB", "measured": max(peaks),
                   "met": max(peaks) < RSS_LIMIT_MB})
    checks += issue_15_targets(rows, memory)
    for fmt in sorted({m["format"] for m in older}):
        sizes = sorted((m for m in memory if m["format"] == fmt), key=lambda m: m["events"])
        if len(sizes) == 2:
            growth = round(sizes[1]["peak_rss_mb"] - sizes[0]["peak_rss_mb"], 1)
            checks.append({"target": f"{fmt} peak RSS growth {sizes[0]['events']:,} -> {sizes[1]['events']:,} "
                                     f"events <= {RSS_GROWTH_LIMIT_MB} MB",
                           "measured": growth, "met": abs(growth) <= RSS_GROWTH_LIMIT_MB})
    reads = [row["secret_reads_per_destination"] for row in rows if "secret_reads_per_destination" in row]
    checks.append({"target": "secret store reads per destination per pass <= 1", "measured": max(reads),
                   "met": max(reads) <= 1})
    return checks


def issue_15_targets(rows: list[dict[str, Any]], memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """jsonl+zstd against jsonl+gzip; the peak RSS of the zstd and Parquet rows (parquet+zstd against the floor is in
    TARGETS)."""
    by_name = {row["variant"]: row for row in rows}
    checks = []
    if "jsonl+zstd" in by_name and "jsonl+gzip" in by_name:
        ratio = round(by_name["jsonl+zstd"]["events_per_s"] / by_name["jsonl+gzip"]["events_per_s"], 2)
        checks.append({"target": f"jsonl+zstd >= {JSONL_ZSTD_TARGET}x jsonl+gzip", "measured": ratio,
                       "met": ratio >= JSONL_ZSTD_TARGET})
    peaks = [row["peak_rss_mb"] for row in rows if row["variant"] in FORMAT_SETTINGS] + [
        m["peak_rss_mb"] for m in memory if m["format"] == "parquet"]
    if peaks:
        checks.append({"target": f"parquet+zstd and jsonl+zstd peak RSS < {ISSUE_15_RSS_LIMIT_MB} MB",
                       "measured": max(peaks), "met": max(peaks) < ISSUE_15_RSS_LIMIT_MB})
    return checks


def format_results(results: dict[str, Any]) -> str:
    head = ("variant", "events/s", "input MB/s", "peak RSS MB", "output bytes", "ratio to floor", "CPU s",
            "storage CPU s", "secret reads")
    widths = (14, 11, 12, 13, 15, 16, 8, 15, 14)
    lines = ["".join(f"{text:<{w}}" if i == 0 else f"{text:>{w}}" for i, (text, w) in enumerate(zip(head, widths,
                                                                                                    strict=True)))]
    for row in results["variants"]:
        cells = (row["variant"], f"{row['events_per_s']:,}", f"{row['input_mb_per_s']:.1f}",
                 f"{row['peak_rss_mb']:.1f}", f"{row['output_bytes']:,}", f"{row['ratio_to_floor']:.2f}",
                 f"{row['cpu_seconds']:.1f}", str(row["storage_cpu_seconds"]), str(row.get("secret_reads", "-")))
        lines.append("".join(f"{text:<{w}}" if i == 0 else f"{text:>{w}}"
                             for i, (text, w) in enumerate(zip(cells, widths, strict=True))))
    runs = "; ".join(f"{row['variant']} {row['runs_events_per_s']}" for row in results["variants"])
    lines.append(f"(events/s of every run, the fastest counts: {runs})")
    load = results["load_average_1min"]
    lines.append(f"(1-minute load average at start {load['start']}, at end {load['end']}, "
                 f"on {results['machine']['cores']} cores; the whole run took {results['bench_seconds']} s)")
    intake = results["intake"]
    lines.append(f"\nintake (HTTP handler -> staging): {intake['records_per_s']:,} records/s, "
                 f"{intake['mb_per_s']:.1f} MB/s over {intake['batches']} batches")
    for row in results["memory"]:
        variant = f"{row['format']}+{MEMORY_COMPRESSION[row['format']]}"
        lines.append(f"memory: {variant:<12} one batch of {row['events']:>9,} events: "
                     f"peak RSS {row['peak_rss_mb']:.1f} MB (after imports {row['baseline_rss_mb']:.1f} MB), "
                     f"{row['events_per_s']:,} events/s")
    lines.extend(intake_memory.format_rows(results.get("intake_memory", [])))
    if results.get("backfill"):
        lines.extend(backfill.format_row(results["backfill"]))
    lines.extend(small_batches.format_rows(results.get("small_batches", [])))
    if results.get("freshness"):
        lines.extend(freshness.format_rows(results["freshness"]))
    lines.append("")
    for check in results["targets"]:
        lines.append(f"{'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The export pass's throughput and memory against the floor.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000, help="records per POST (default 50,000)")
    parser.add_argument("--memory-events", type=int, default=100_000,
                        help="the small single batch compared with one batch of --events (default 100,000)")
    parser.add_argument("--hours", type=int, default=2, help="hours the events span (default 2)")
    parser.add_argument("--connection-string", default=os.environ.get("BENCH_STORAGE_CONNECTION", AZURITE_CONNECTION))
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting for every variant, e.g. UPLOAD_CONCURRENCY=8 (repeatable)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile each measured run with py-spy into DIR")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each export variant this many times, restaged each time (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's containers")
    parser.add_argument("--intake-memory-mib", type=float, default=90,
                        help="size of the intake-memory bodies, one of each kind (default 90; 0 skips them)")
    shapes = parser.add_argument_group("issue 13's shapes (bench/README.md, \"Backfills and small batches\")")
    shapes.add_argument("--backfill-events", type=int, help="events of the 4,000-hour shape (default: --events; "
                        "0 skips it)")
    shapes.add_argument("--backfill-hours", type=int, default=4_000, help="hours they span (default 4,000)")
    shapes.add_argument("--floor-concurrency", type=int, default=32,
                        help="files the 4,000-hour floor writes at once (default 32)")
    shapes.add_argument("--small-posts", type=int, default=500,
                        help="POSTs of the small-batch shape (default 500; 0 skips it): on Azurite their export "
                             "one batch at a time costs storage CPU as the square of their number")
    shapes.add_argument("--small-events-per-post", type=int, default=100)
    shapes.add_argument("--small-destinations", type=int, default=50)
    shapes.add_argument("--small-clients", type=int, default=8, help="concurrent posting clients (default 8)")
    shapes.add_argument("--coalesce", action="store_true",
                        help="create the small-batch destinations with coalesce (when the product accepts it)")
    fresh = parser.add_argument_group("issue 14's freshness and scale-out (bench/README.md, \"Freshness\")")
    fresh.add_argument("--freshness-rate", type=float, default=2_000,
                       help="events/s of the steady load against make serve (default 2,000; 0 skips freshness)")
    fresh.add_argument("--freshness-seconds", type=float, default=60)
    fresh.add_argument("--freshness-steps", default="500,1000",
                       help="other rates, 20 s each, for the highest sustained rate (comma-separated; '' for none)")
    fresh.add_argument("--freshness-destinations", type=int, default=20)
    fresh.add_argument("--scale-batches", type=int, default=500,
                       help="batches the 1, 2 and 4 worker processes export (default 500; 0 skips the scale run)")
    parser.add_argument("--label", default="", help="recorded with the results, e.g. which tree of the product ran")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.setting)
    options = BenchOptions(events=args.events, batch_size=args.batch_size, memory_events=args.memory_events,
                           hours=args.hours, settings=settings, profile_dir=args.profile, keep=args.keep,
                           repeat=max(1, args.repeat), intake_memory_mib=args.intake_memory_mib,
                           backfill_events=args.backfill_events, backfill_hours=args.backfill_hours,
                           floor_concurrency=args.floor_concurrency, small_posts=args.small_posts,
                           small_events_per_post=args.small_events_per_post,
                           small_destinations=args.small_destinations, small_clients=args.small_clients,
                           coalesce=args.coalesce, label=args.label, freshness_rate=args.freshness_rate,
                           freshness_seconds=args.freshness_seconds,
                           freshness_steps=tuple(float(r) for r in args.freshness_steps.split(",") if r.strip()),
                           freshness_destinations=args.freshness_destinations, scale_batches=args.scale_batches)
    run_benchmark(args.connection_string, args.results, options)


if __name__ == "__main__":
    main()
