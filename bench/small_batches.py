"""The small-batch shape (issue 13): many customers posting 100-event batches often, then the export of them all.

A platform that posts 100 events every few seconds for each of its customers makes thousands of small batches;
exported one at a time, each pays a dozen round trips and lands a file of 100 events. This shape measures it:

1. `--small-destinations` (50) destinations, each with a container of its own, in one control container, served
   by the product's API in a server process of its own (`bench.intake_memory serve`: the bench's client threads
   do not share its interpreter);
2. `--small-posts` (500; the issue's figure is 10,000, see bench/README.md) POSTs of `--small-events-per-post` (100)
   Mixpanel-shaped events, POST i to destination i mod 50, from `--small-clients` (8) threads with an
   httpx client each: POSTs/s and the latency of each POST (p50, p99);
3. export passes, each in a process of its own, until every record has landed (one pass unless the product
   holds batches back): batches/s, events/s, files written, app CPU per file, peak RSS.

With `--coalesce` the destinations are created with `coalesce: {"max_delay_seconds": 0, "target_file_mb": 128}`
(issue 13, item 4). Whether the product takes it is found out at run time: the first destination's PUT answers
201, or 422 naming `coalesce`. When it is refused the shape is measured one batch at a time and says so
(`"coalesced": false`); when it is taken, the same shape is measured again without it in the same run, and the
coalesced export is compared with that one ("at least 5x faster than one batch at a time").
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from azure.storage.blob import ContainerClient

from bench import intake_memory
from bench.runs import REPO_ROOT, Run, cpu_of, run_worker
from bench.workload import destination_body, landed
from scripts import sample_data

# Today's POSTs/s (one batch at a time, before issue 13's product changes): the median of the three "before" runs
# at the defaults (36.0, 45.6 and 46.9; bench/README.md, "Backfills and small batches"). The 2x target's base.
BEFORE_POSTS_PER_S = 45.6
# The export one batch at a time before issue 13's product changes: the quietest "before" run's (6.2-8.5 over three;
# bench/README.md). Each row's export is also given against it: how much faster small batches export than they did.
BEFORE_EXPORT_BATCHES_PER_S = 8.5
POSTS_TARGET = 2.0
COALESCED_TARGET = 5.0  # coalesced export events/s over one batch at a time, the same shape in the same run
COALESCE = {"max_delay_seconds": 0, "target_file_mb": 128}
HOURS = 2  # the events of all the POSTs, in order, cover 2 UTC hours: a POST mostly lands in one hour
MAX_PASSES = 20


@dataclass
class Setup:
    """One measurement's control container, destinations and app settings (for its server and its exports)."""

    name: str
    settings: dict[str, Any]
    destinations: list[tuple[str, ContainerClient]]
    coalesced: bool = False


def new_setup(run: Run, name: str, slug: str) -> Setup:
    control = f"bench-{run.run_id}-{slug}-ctl"
    run.service.create_container(control)
    run.containers.append(control)
    settings: dict[str, Any] = {
        "control_storage_connection": run.connection_string, "control_container": control,
        "local_secrets_path": str(run.work_dir / f"{run.run_id}-{slug}-secrets.json"), "allow_http_loopback": True,
        # One server takes every client's POST at once: with the default (4) the rest would be answered 503 and
        # "again in 5 seconds", which would measure that limit rather than what a POST costs.
        "max_concurrent_intake": max(run.options.small_clients, 4),
        **run.options.settings,
    }
    destinations = []
    for index in range(run.options.small_destinations):
        container = run.service.create_container(f"bench-{run.run_id}-{slug}-{index:03d}")
        run.containers.append(container.container_name)
        destinations.append((f"bench-{slug}-{index:03d}", container))
    return Setup(name, settings, destinations)


@contextmanager
def server_process(settings: dict[str, Any]) -> Iterator[tuple[str, psutil.Process]]:
    """The product's API in a process of its own with these app settings; yields its base URL and process."""
    port = intake_memory.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "WARNING",
           **{name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
              for name, value in settings.items()}}
    server = subprocess.Popen([sys.executable, str(Path(intake_memory.__file__).resolve()), "serve", "--port",
                               str(port)], env=env, cwd=str(REPO_ROOT))
    try:
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base_url) as client:
            intake_memory.wait_until_up(client, server)
        yield base_url, psutil.Process(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def register(client: httpx.Client, run: Run, setup: Setup, *, coalesce: bool) -> bool:
    """Create the destinations (with `coalesce` if asked and the product takes it); return whether it took it."""
    coalesced = coalesce
    for destination_id, container in setup.destinations:
        extra = {"coalesce": COALESCE} if coalesced else {}
        response = client.put(f"/api/destinations/{destination_id}",
                              json=destination_body(run.service, container.container_name, "jsonl", **extra))
        if coalesced and response.status_code == 422 and _names_field(response, "coalesce"):
            run.say("the product does not accept `coalesce` yet: measuring one batch at a time")
            coalesced = False
            response = client.put(f"/api/destinations/{destination_id}",
                                  json=destination_body(run.service, container.container_name, "jsonl"))
        if response.status_code not in (200, 201):
            raise RuntimeError(f"could not create destination {destination_id}: {response.text[:300]}")
    return coalesced


def _names_field(response: httpx.Response, name: str) -> bool:
    details = response.json().get("error", {}).get("details", [])
    return any(str(item.get("field", "")).split(".")[0] == name for item in details)


def bodies(run: Run) -> list[bytes]:
    options = run.options
    events = sample_data.events(options.small_posts * options.small_events_per_post, seed=options.seed,
                                hours=HOURS, shapes=("mixpanel",))
    per_post = options.small_events_per_post
    return [sample_data.ndjson([next(events) for _ in range(per_post)]) for _ in range(options.small_posts)]


def post_all(base_url: str, jobs: list[tuple[str, bytes]], clients: int) -> tuple[float, list[float]]:
    """POST every (destination, body) from `clients` threads, each with its own client; (wall seconds, latencies)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    place = iter(range(len(jobs)))

    def client_loop() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            while True:
                with lock:
                    index = next(place, None)
                if index is None or failures:
                    return
                destination_id, body = jobs[index]
                started = time.perf_counter()
                response = client.post(f"/api/destinations/{destination_id}/batches", params={"type": "events"},
                                       content=body, headers={"content-type": "application/x-ndjson"})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 202:
                        failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=client_loop, name=f"bench-client-{n}") for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"intake refused a small batch: {failures[0]}")
    return seconds, latencies


def _cpu_now(server: psutil.Process, run: Run) -> tuple[float | None, float | None, float | None]:
    """CPU seconds so far of the API's process, of the storage emulator, and of this process (the clients)."""
    return cpu_of(server), cpu_of(run.storage), cpu_of(psutil.Process())


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def export_all(run: Run, setup: Setup, expected: int) -> dict[str, Any]:
    """Export passes, each in a fresh process, until every record has landed; their summed figures."""
    seconds = cpu = storage = 0.0
    peak = 0.0
    passes = 0
    while True:
        passes += 1
        result = run_worker({"kind": "export", "settings": setup.settings}, run.storage,
                            run.profile(f"{setup.name.replace(' ', '-')}-{passes}"))
        seconds, cpu = seconds + result["seconds"], cpu + result["cpu_seconds"]
        storage += result["storage_cpu_seconds"] or 0.0
        peak = max(peak, result["peak_rss_mb"])
        found = [landed(container) for _, container in setup.destinations]
        records = sum(item.records for item in found)
        if records >= expected:
            break
        if passes >= MAX_PASSES or not result["summary"].get("landed"):
            raise RuntimeError(f"{setup.name}: {records} of {expected} records landed after {passes} passes "
                               f"({result['summary']})")
    if records != expected:
        raise RuntimeError(f"{setup.name}: {records} records landed, {expected} were accepted")
    files = sum(item.files for item in found)
    return {"passes": passes, "seconds": round(seconds, 3), "events": records, "files": files,
            "manifests": sum(item.manifests for item in found), "output_bytes": sum(item.bytes for item in found),
            "events_per_s": round(records / seconds), "cpu_seconds": round(cpu, 2),
            "cpu_ms_per_file": round(1000 * cpu / max(files, 1), 2), "peak_rss_mb": peak,
            "storage_cpu_seconds": round(storage, 2)}


def measure_shape(run: Run, name: str, slug: str, posts: list[bytes], *, coalesce: bool) -> dict[str, Any]:
    options = run.options
    setup = new_setup(run, name, slug)
    jobs = [(setup.destinations[i % len(setup.destinations)][0], body) for i, body in enumerate(posts)]
    with server_process(setup.settings) as (base_url, server):
        with httpx.Client(base_url=base_url, timeout=60) as client:
            setup.coalesced = register(client, run, setup, coalesce=coalesce)
        how = "coalesced" if setup.coalesced else "one batch at a time"
        run.say(f"posting {len(posts):,} batches of {options.small_events_per_post} events to "
                f"{len(setup.destinations)} destinations from {options.small_clients} clients ({how}) ...")
        before = _cpu_now(server, run)
        seconds, latencies = post_all(base_url, jobs, options.small_clients)
        app_cpu, storage_cpu, client_cpu = [
            None if start is None or end is None else round(1000 * (end - start) / len(posts), 2)
            for start, end in zip(before, _cpu_now(server, run), strict=True)]
    events = len(posts) * options.small_events_per_post
    run.say(f"measuring the export of the small batches ({how}) ...")
    export = export_all(run, setup, events)
    run.drop(containers=(setup.settings["control_container"], *(c.container_name for _, c in setup.destinations)))
    return {
        "variant": "small batches, coalesced" if setup.coalesced else "small batches, one batch at a time",
        "coalesce_requested": coalesce, "coalesced": setup.coalesced, "coalesce": COALESCE if setup.coalesced else None,
        "destinations": len(setup.destinations), "posts": len(posts), "events_per_post": options.small_events_per_post,
        "clients": options.small_clients, "events": events,
        "max_concurrent_intake": setup.settings.get("MAX_CONCURRENT_INTAKE", setup.settings["max_concurrent_intake"]),
        "intake": {"seconds": round(seconds, 3), "posts_per_s": round(len(posts) / seconds, 1),
                   "records_per_s": round(events / seconds), "p50_ms": round(1000 * _percentile(latencies, 0.5), 1),
                   "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
                   "max_ms": round(1000 * max(latencies), 1), "app_cpu_ms_per_post": app_cpu,
                   "storage_cpu_ms_per_post": storage_cpu, "client_cpu_ms_per_post": client_cpu},
        "export": export | {"batches": len(posts), "batches_per_s": round(len(posts) / export["seconds"], 1),
                            "x_before": round(len(posts) / export["seconds"] / BEFORE_EXPORT_BATCHES_PER_S, 2)},
    }


def measure_small_batches(run: Run) -> list[dict[str, Any]]:
    """The shape's rows: one batch at a time, or (with `--coalesce`, when the product takes it) coalesced and
    one batch at a time, the latter then measured second."""
    posts = bodies(run)
    first = measure_shape(run, "small batches", "small", posts, coalesce=run.options.coalesce)
    if not first["coalesced"]:
        return [first]
    return [measure_shape(run, "small batches, one at a time", "smallref", posts, coalesce=False), first]


def targets(rows: list[dict[str, Any]], rss_limit_mb: float) -> list[dict[str, Any]]:
    main = rows[-1]
    posts = main["intake"]["posts_per_s"]
    checks = [{"target": f"small batches: POSTs/s >= {POSTS_TARGET}x today's ({BEFORE_POSTS_PER_S})",
               "measured": round(posts / BEFORE_POSTS_PER_S, 2) if BEFORE_POSTS_PER_S else None,
               "met": bool(BEFORE_POSTS_PER_S) and posts >= POSTS_TARGET * BEFORE_POSTS_PER_S}]
    if main["coalesced"]:
        ratio = round(main["export"]["events_per_s"] / rows[0]["export"]["events_per_s"], 2)
        checks.append({"target": f"small batches: coalesced export >= {COALESCED_TARGET}x one batch at a time",
                       "measured": ratio, "met": ratio >= COALESCED_TARGET})
    else:
        checks.append({"target": f"small batches: coalesced export >= {COALESCED_TARGET}x one batch at a time",
                       "measured": "not coalesced" + ("" if main["coalesce_requested"] else " (no --coalesce)"),
                       "met": False})
    peak = max(row["export"]["peak_rss_mb"] for row in rows)
    checks.append({"target": f"small-batch export peak RSS < {rss_limit_mb} MB", "measured": peak,
                   "met": peak < rss_limit_mb})
    return checks


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        intake, export = row["intake"], row["export"]
        lines += [
            f"\n{row['variant']}: {row['posts']:,} POSTs of {row['events_per_post']} events to "
            f"{row['destinations']} destinations from {row['clients']} clients",
            f"  intake: {intake['posts_per_s']:,} POSTs/s ({intake['records_per_s']:,} records/s), per POST "
            f"p50 {intake['p50_ms']:.0f} ms, p99 {intake['p99_ms']:.0f} ms; CPU per POST: app "
            f"{intake.get('app_cpu_ms_per_post')} ms, storage {intake.get('storage_cpu_ms_per_post')} ms, clients "
            f"{intake.get('client_cpu_ms_per_post')} ms",
            f"  export: {export['batches_per_s']:,} batches/s, {export['events_per_s']:,} events/s, "
            f"{export['files']:,} files, {export['manifests']:,} manifests in {export['passes']} pass(es), "
            f"{export['cpu_ms_per_file']:.1f} ms CPU per file, storage CPU {export['storage_cpu_seconds']} s, "
            f"peak RSS {export['peak_rss_mb']:.1f} MB; {export['x_before']}x the export one batch at a time before "
            f"issue 13 ({BEFORE_EXPORT_BATCHES_PER_S} batches/s)",
        ]
    return lines
