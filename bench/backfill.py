"""The 4,000-hour shape (issue 13): a backfill's events spread over thousands of hours, against its own floor.

The main workload's events cover 2 hours: a 50,000-event batch touches 2 partitions and lands 2 files. A platform
backfilling six months (Mixpanel offers it) posts as many events spread over 4,000 hours: each batch touches
hundreds of hour partitions, the export writes one small file per batch per partition, and the time goes into
per-file round trips rather than bytes. This shape measures that, in the same run as the main workload:

1. as many events as the main workload (`--backfill-events`, default `--events`), Mixpanel-shaped, over
   `--backfill-hours` (4,000) UTC hours, posted in `--batch-size` batches through the same in-process HTTP
   intake as the main workload: intake MB/s, compared with the two-hour shape's;
2. its floor, in a process of its own (`bench.worker`, job `files_floor`): the same data files the product
   writes, one per batch per hour partition, each the gzip of that partition's staged lines at the product's
   gzip level, read from the same staged bytes and written with one plain SDK Put Blob each,
   `--floor-concurrency` files at once over as many kept-alive connections; measured before and after the
   export, the faster counts;
3. the product's export pass (jsonl+gzip) in a process of its own: events/s, files, the ratio to its floor and
   to the two-hour jsonl+gzip export's events/s, app CPU per file, peak RSS.

Which staged bytes make which file comes from the batches' state documents (`partitions`: blob, bytes, and an
`offset` when staging keeps several partitions in one blob): `staged_files` is the one place that knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench.runs import MB, Run, run_worker
from bench.workload import IntakeServer, Variant, container_sas_url, iter_event_batches, landed, stage
from shared.control.batches import state_blob
from shared.settings import load_settings

FLOOR_TARGET = 0.7  # the export's events/s over its own floor's
TWO_HOUR_TARGET = 0.25  # the export's events/s over the two-hour jsonl+gzip export's
INTAKE_TARGET = 0.7  # intake MB/s over the two-hour shape's
SHAPES = ("mixpanel",)


def backfill_events(run: Run) -> int:
    options = run.options
    return options.events if options.backfill_events is None else options.backfill_events


def stage_backfill(run: Run, server: IntakeServer) -> tuple[Variant, int]:
    """Post the shape's events through the intake; return its variant and the bytes posted."""
    options = run.options
    variant = run.variant(f"{options.backfill_hours:,}-hour jsonl+gzip", "jsonl", "backfill")
    posted = 0

    def bodies() -> Iterator[bytes]:  # made between POSTs, outside their timing
        nonlocal posted
        for body in iter_event_batches(backfill_events(run), options.batch_size, seed=options.seed,
                                       hours=options.backfill_hours, shapes=SHAPES):
            posted += len(body)
            yield body

    run.say(f"staging {backfill_events(run):,} events over {options.backfill_hours:,} hours through the HTTP "
            "intake ...")
    stage(server, run.service, variant, bodies())
    return variant, posted


def staged_files(variant: Variant) -> list[dict[str, Any]]:
    """The data files the export writes (one per batch per partition) and the staged bytes each is made of."""
    files = []
    for batch_id in variant.batch_ids:
        document = variant.services.control.get(state_blob(batch_id))
        if document is None:
            raise RuntimeError(f"batch {batch_id} has no state document")
        for part in document.data["partitions"]:
            files.append({"name": f"floor/{part['key']}/{batch_id}.jsonl.gz", "blob": part["blob"],
                          "offset": part.get("offset") or 0, "length": part["bytes"], "records": part["records"]})
    return files


def measure_floor(run: Run, variant: Variant, files: list[dict[str, Any]], attempt: int) -> dict[str, Any]:
    settings = load_settings(**variant.settings_overrides)
    container = f"bench-{run.run_id}-bffloor{attempt}-out"
    run.service.create_container(container)
    run.containers.append(container)
    account_url, token = container_sas_url(run.service, container)
    result = run_worker({
        "kind": "files_floor", "control_connection": run.connection_string,
        "control_container": settings.control_container, "files": files,
        "destination_url": f"{account_url}/{container}?{token}", "concurrency": run.options.floor_concurrency,
        "gzip_level": settings.gzip_level,
    }, run.storage, run.profile(f"backfill-floor-{attempt}"))
    written = landed(run.service.get_container_client(container), prefix="floor/").files
    if written != len(files):
        raise RuntimeError(f"the files floor wrote {written} of {len(files)} files")
    return _row(variant.intake_records, len(files), result["output_bytes"], result)


def measure_export(run: Run, variant: Variant) -> dict[str, Any]:
    result = run_worker({"kind": "export", "settings": variant.settings_overrides}, run.storage,
                        run.profile(variant.destination_id))
    found = landed(variant.destination)
    if found.records != variant.intake_records:
        raise RuntimeError(f"{variant.name}: {found.records} of {variant.intake_records} records landed "
                           f"({result['summary']})")
    return _row(found.records, found.files, found.bytes, result) | {"manifests": found.manifests}


def _row(events: int, files: int, output: int, result: dict[str, Any]) -> dict[str, Any]:
    seconds, cpu = result["seconds"], result["cpu_seconds"]
    return {"events": events, "files": files, "seconds": round(seconds, 3), "events_per_s": round(events / seconds),
            "files_per_s": round(files / seconds, 1), "output_bytes": output, "cpu_seconds": round(cpu, 2),
            "cpu_ms_per_file": round(1000 * cpu / max(files, 1), 2), "peak_rss_mb": result["peak_rss_mb"],
            "storage_cpu_seconds": result["storage_cpu_seconds"]}


def _ratio(value: float, reference: float | None) -> float | None:
    return round(value / reference, 3) if reference else None


def measure_backfill(run: Run, variant: Variant, posted: int, *, two_hour_events_per_s: float | None,
                     two_hour_intake_mb_per_s: float | None) -> dict[str, Any]:
    """Floor, export, floor again; the shape's figures and their ratios to the floor and the two-hour shape."""
    files = staged_files(variant)
    run.say(f"measuring the {variant.name} floor ({len(files):,} files) ...")
    floors = [measure_floor(run, variant, files, 1)]
    run.say(f"measuring the export pass, {variant.name} ...")
    export = measure_export(run, variant)
    run.say(f"measuring the {variant.name} floor again ...")
    floors.append(measure_floor(run, variant, files, 2))
    run.drop(variants=(variant,), containers=tuple(name for name in list(run.containers) if "-bffloor" in name))
    floor = max(floors, key=lambda row: row["events_per_s"]) | {
        "runs_events_per_s": [row["events_per_s"] for row in floors], "concurrency": run.options.floor_concurrency}
    intake_mb_per_s = posted / MB / variant.intake_seconds
    return {
        "variant": variant.name, "hours": run.options.backfill_hours, "events": variant.intake_records,
        "batches": len(variant.batch_ids), "staged_partitions": len(files),
        "staged_bytes": sum(item["length"] for item in files),
        "intake": {"seconds": round(variant.intake_seconds, 3),
                   "records_per_s": round(variant.intake_records / variant.intake_seconds),
                   "mb_per_s": round(intake_mb_per_s, 2),
                   "ratio_to_two_hour": _ratio(intake_mb_per_s, two_hour_intake_mb_per_s)},
        "floor": floor,
        "export": export | {
            "ratio_to_floor": _ratio(export["events_per_s"], floor["events_per_s"]),
            "ratio_to_two_hour": _ratio(export["events_per_s"], two_hour_events_per_s),
            "cpu_per_file_ratio_to_floor": _ratio(export["cpu_ms_per_file"], floor["cpu_ms_per_file"]),
            # The floor writes the product's bytes: equal sizes unless the product's files differ (a day partition,
            # a run's file of several batches, another gzip level).
            "same_bytes_as_floor": export["output_bytes"] == floor["output_bytes"]},
    }


def targets(row: dict[str, Any], rss_limit_mb: float) -> list[dict[str, Any]]:
    name, export = row["variant"], row["export"]
    checks = [(f"{name} export >= {FLOOR_TARGET}x its floor", export["ratio_to_floor"], FLOOR_TARGET),
              (f"{name} export >= {TWO_HOUR_TARGET}x the two-hour jsonl+gzip events/s", export["ratio_to_two_hour"],
               TWO_HOUR_TARGET),
              (f"{name} intake >= {INTAKE_TARGET}x the two-hour intake MB/s", row["intake"]["ratio_to_two_hour"],
               INTAKE_TARGET)]
    found = [{"target": text, "measured": value, "met": value is not None and value >= bound}
             for text, value, bound in checks]
    return [*found, {"target": f"{name} export peak RSS < {rss_limit_mb} MB", "measured": export["peak_rss_mb"],
                     "met": export["peak_rss_mb"] < rss_limit_mb}]


def format_row(row: dict[str, Any]) -> list[str]:
    floor, export, intake = row["floor"], row["export"], row["intake"]
    two_hour = "-" if intake["ratio_to_two_hour"] is None else f"{intake['ratio_to_two_hour']:.2f}x"
    export_two_hour = "-" if export["ratio_to_two_hour"] is None else f"{export['ratio_to_two_hour']:.3f}x"
    return [
        f"\n{row['variant']}: {row['events']:,} events in {row['batches']} batches, {row['staged_partitions']:,} "
        f"staged partitions ({row['staged_bytes'] / MB:.1f} MB)",
        f"  intake: {intake['records_per_s']:,} records/s, {intake['mb_per_s']:.1f} MB/s ({two_hour} the two-hour "
        "shape's)",
        f"  floor (one Put Blob per file, {floor['concurrency']} at once): {floor['events_per_s']:,} events/s, "
        f"{floor['files']:,} files ({floor['files_per_s']:,} files/s), {floor['cpu_ms_per_file']:.1f} ms CPU per "
        f"file, storage CPU {floor['storage_cpu_seconds']} s (every run: {floor['runs_events_per_s']})",
        f"  export: {export['events_per_s']:,} events/s, {export['files']:,} files ({export['files_per_s']:,} "
        f"files/s), {export['ratio_to_floor']:.2f}x the floor, {export_two_hour} the two-hour export, "
        f"{export['cpu_ms_per_file']:.1f} ms CPU per file ({export['cpu_per_file_ratio_to_floor']}x the floor's), "
        f"storage CPU {export['storage_cpu_seconds']} s, peak RSS {export['peak_rss_mb']:.1f} MB",
    ]
