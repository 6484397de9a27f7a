"""Freshness and scale-out (issue 14): how soon an accepted batch lands through the export queue, and how the
export scales with worker processes.

1. **Freshness**: `make serve` itself (`scripts.serve` in a process of its own: the API, the queue consumer and
   the timer, as a developer runs it) takes a steady load, `--freshness-rate` events/s (2,000) in POSTs of
   `--small-events-per-post` (100) for `--freshness-seconds` (60), spread over `--freshness-destinations` (20)
   destinations without coalescing, then the same load again to destinations that coalesce with
   `max_delay_seconds: 0` (the issue allows either: a run takes what is due at once, so a burst's batches of one
   destination land together in one file per hour). Each batch's accept-to-landed latency is its state's
   `finished_at` minus its `created_at` (both the server's clock, at the 202 and at the landing): p50 / p95 /
   p99. Target: p95 under 30 s, with or without coalescing. Then the same for 20 s at each rate of
   `--freshness-steps` (500 and 1,000 by default, without coalescing), each in fresh
   containers: the highest sustained rate is the highest whose POSTs kept their pace (95%) and whose p95
   stayed under 30 s.
2. **Scale**: `--scale-batches` (500) batches of 100 events are staged with no consumer running (the API
   alone), then 1, 2 and 4 worker processes (`python -m scripts.worker`, as separate Functions instances would
   be) export them from the queue: seconds from the workers' start to the last landing, and events/s for each
   count. Target: 4 workers not slower than 1 on this 2-core machine (Azurite is shared by all of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import intake_memory, small_batches
from bench.runs import REPO_ROOT, Run
from bench.workload import destination_body
from scripts import sample_data
from shared.control import batch_index

P95_TARGET_SECONDS = 30.0
PACE_KEPT = 0.95  # a step kept its pace if its POSTs went out at 95% of the asked rate or more
WORKER_COUNTS = (1, 2, 4)
STEP_SECONDS = 20


@dataclass
class Place:
    """One measurement's control container, export queue, destinations and the environment of its processes."""

    control: str
    queue: str
    destinations: list[str]
    env: dict[str, str]
    coalesce: bool = False


def new_place(run: Run, slug: str, destinations: int, *, coalesce: bool = False) -> Place:
    control = f"bench-{run.run_id}-{slug}-ctl"
    run.service.create_container(control)
    run.containers.append(control)
    names = []
    for index in range(destinations):
        container = f"bench-{run.run_id}-{slug}-{index:03d}"
        run.service.create_container(container)
        run.containers.append(container)
        names.append(container)
    queue = f"bench-{run.run_id}-{slug}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"CONTROL_STORAGE_CONNECTION", "AZURITE_PORT"}},
        "PYTHONPATH": str(REPO_ROOT), "AzureWebJobsStorage": run.connection_string, "CONTROL_CONTAINER": control,
        "EXPORT_QUEUE_NAME": queue, "LOCAL_SECRETS_PATH": str(run.work_dir / f"{slug}-secrets.json"),
        "KEY_VAULT_URL": "", "ALLOW_HTTP_LOOPBACK": "true", "LOG_LEVEL": "WARNING", "LOCAL_INTAKE_KEY": "",
        "LOCAL_ADMIN_KEY": "", "MAX_CONCURRENT_INTAKE": "16", "EXPORT_SCHEDULE": "0 0 0 1 1 *",
        **{name: str(value) for name, value in run.options.settings.items()},
    }
    return Place(control, queue, names, env, coalesce)


@contextmanager
def serve(place: Place, *, consumer: bool) -> Iterator[str]:
    """`scripts.serve` (with its queue consumer and timer) or the API alone; yields its base URL."""
    port = intake_memory.free_port()
    command = ([sys.executable, "-m", "scripts.serve", "--port", str(port)] if consumer else
               [sys.executable, str(Path(intake_memory.__file__).resolve()), "serve", "--port", str(port)])
    env = place.env if consumer else {**place.env, "CONTROL_STORAGE_CONNECTION": place.env["AzureWebJobsStorage"]}
    server = subprocess.Popen(command, env=env, cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL)
    try:
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base_url) as client:
            intake_memory.wait_until_up(client, server)
            for index, container in enumerate(place.destinations):
                body = destination_body(_service(place), container, "jsonl")
                if place.coalesce:
                    body["coalesce"] = small_batches.COALESCE
                response = client.put(f"/api/destinations/fresh-{index:03d}", json=body)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"could not create a destination: {response.text[:300]}")
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=60)


_services: dict[str, Any] = {}


def _service(place: Place) -> Any:
    from azure.storage.blob import BlobServiceClient

    connection = place.env["AzureWebJobsStorage"]
    if connection not in _services:
        _services[connection] = BlobServiceClient.from_connection_string(connection)
    return _services[connection]


def paced_posts(base_url: str, place: Place, bodies: list[bytes], rate: float, clients: int = 16
                ) -> tuple[float, list[str]]:
    """POST each body at its time (`rate` a second) from `clients` threads; (seconds taken, batch ids)."""
    ids: list[str | None] = [None] * len(bodies)
    failures: list[str] = []
    lock = threading.Lock()
    place_index = iter(range(len(bodies)))
    start = time.perf_counter()

    def loop() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            while True:
                with lock:
                    index = next(place_index, None)
                if index is None or failures:
                    return
                wait = start + index / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                destination = f"fresh-{index % len(place.destinations):03d}"
                response = client.post(f"/api/destinations/{destination}/batches", params={"type": "events"},
                                       content=bodies[index], headers={"content-type": "application/x-ndjson"})
                if response.status_code != 202:
                    with lock:
                        failures.append(f"{response.status_code} {response.text[:300]}")
                    return
                ids[index] = response.json()["batch_id"]

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"intake refused a batch: {failures[0]}")
    return time.perf_counter() - start, [i for i in ids if i is not None]


def landed_count(place: Place) -> int:
    """Batches landed, from the batch index's markers of finished batches (`shared.control.batch_index`)."""
    container = _service(place).get_container_client(place.control)
    return sum(1 for blob in container.list_blobs(name_starts_with=batch_index.ALL, include=["metadata"])
               if (blob.metadata or {}).get("state") == "landed")


def wait_landed(place: Place, expected: int, seconds: float) -> float:
    """Wait until `expected` batches have landed; return when the last did (monotonic seconds)."""
    deadline = time.monotonic() + seconds
    while landed_count(place) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{landed_count(place)} of {expected} batches landed within {seconds:.0f} s")
        time.sleep(0.25)
    return time.monotonic()


def latencies(base_url: str, ids: list[str]) -> list[float]:
    """Accept-to-landed seconds of each batch, from its status (server clock at both ends)."""
    def one(batch_id: str) -> float:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            state = client.get(f"/api/batches/{batch_id}").json()
        return (datetime.fromisoformat(state["finished_at"]) - datetime.fromisoformat(state["created_at"])
                ).total_seconds()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, ids))


def measure_load(run: Run, slug: str, events_per_s: float, seconds: float, *, coalesce: bool = False
                 ) -> dict[str, Any]:
    options = run.options
    per_post = options.small_events_per_post
    rate = events_per_s / per_post
    posts = max(1, round(rate * seconds))
    events = sample_data.events(posts * per_post, seed=options.seed, hours=2, shapes=("mixpanel",))
    bodies = [sample_data.ndjson([next(events) for _ in range(per_post)]) for _ in range(posts)]
    place = new_place(run, slug, options.freshness_destinations, coalesce=coalesce)
    with serve(place, consumer=True) as base_url:
        run.say(f"freshness: {events_per_s:,.0f} events/s ({rate:.0f} POSTs of {per_post}) for {seconds:.0f} s"
                f"{', coalescing' if coalesce else ''} ...")
        took, ids = paced_posts(base_url, place, bodies, rate)
        wait_landed(place, len(ids), seconds=600)
        lags = latencies(base_url, ids)
    run.drop(containers=(place.control, *place.destinations))
    achieved = len(ids) * per_post / took
    p95 = small_batches._percentile(lags, 0.95)
    return {"events_per_s_asked": events_per_s, "coalesce": coalesce, "events_per_s_sent": round(achieved),
            "posts": len(ids),
            "seconds": round(took, 1), "p50_s": round(small_batches._percentile(lags, 0.5), 2),
            "p95_s": round(p95, 2), "p99_s": round(small_batches._percentile(lags, 0.99), 2),
            "max_s": round(max(lags), 2),
            "sustained": achieved >= PACE_KEPT * events_per_s and p95 < P95_TARGET_SECONDS}


def measure_scale(run: Run, workers: int) -> dict[str, Any]:
    options = run.options
    per_post = options.small_events_per_post
    events = sample_data.events(options.scale_batches * per_post, seed=options.seed, hours=2, shapes=("mixpanel",))
    bodies = [sample_data.ndjson([next(events) for _ in range(per_post)]) for _ in range(options.scale_batches)]
    place = new_place(run, f"scale{workers}", options.freshness_destinations)
    with serve(place, consumer=False) as base_url:
        run.say(f"scale: staging {len(bodies)} batches, then {workers} worker process(es) ...")
        _, ids = paced_posts(base_url, place, bodies, rate=10_000)
    started = time.monotonic()
    processes = [subprocess.Popen([sys.executable, "-m", "scripts.worker"], env=place.env, cwd=str(REPO_ROOT),
                                  stdout=subprocess.DEVNULL) for _ in range(workers)]
    try:
        finished = wait_landed(place, len(ids), seconds=900)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=120)
    run.drop(containers=(place.control, *place.destinations))
    seconds = finished - started
    return {"workers": workers, "batches": len(ids), "seconds": round(seconds, 2),
            "events_per_s": round(len(ids) * per_post / seconds)}


def measure_freshness(run: Run) -> dict[str, Any]:
    options = run.options
    main = measure_load(run, "fresh", options.freshness_rate, options.freshness_seconds)
    coalesced = measure_load(run, "freshco", options.freshness_rate, options.freshness_seconds, coalesce=True)
    steps = [measure_load(run, f"step{index}", rate, STEP_SECONDS)
             for index, rate in enumerate(options.freshness_steps)]
    sustained = [row["events_per_s_asked"] for row in [main, coalesced, *steps] if row["sustained"]]
    scale = [measure_scale(run, count) for count in WORKER_COUNTS] if options.scale_batches else []
    return {"load": main, "load_coalesced": coalesced, "steps": steps,
            "highest_sustained_events_per_s": max(sustained, default=None), "scale": scale}


def targets(row: dict[str, Any]) -> list[dict[str, Any]]:
    loads = [row["load"], *([row["load_coalesced"]] if "load_coalesced" in row else [])]
    # The load is to destinations with or without coalescing; it counts only if its POSTs kept the pace.
    kept = [load for load in loads if load["events_per_s_sent"] >= PACE_KEPT * load["events_per_s_asked"]]
    best = min(kept or loads, key=lambda load: load["p95_s"])
    found = [{"target": "freshness: accept-to-landed p95 under 30 s at the steady load, its pace kept (with or "
                        "without coalescing)",
              "measured": best["p95_s"], "met": bool(kept) and best["p95_s"] < P95_TARGET_SECONDS}]
    by_count = {item["workers"]: item for item in row["scale"]}
    if 1 in by_count and 4 in by_count:
        ratio = by_count[4]["events_per_s"] / by_count[1]["events_per_s"]
        found.append({"target": "scale: 4 worker processes not slower than 1", "measured": round(ratio, 2),
                      "met": ratio >= 1.0})
    return found


def format_rows(row: dict[str, Any]) -> list[str]:
    lines = ["", "Freshness (issue 14): accept-to-landed through the export queue, `make serve`",
             f"{'events/s asked':>15} {'sent':>8} {'POSTs':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} sustained"]
    for item in [row["load"], *([row["load_coalesced"]] if "load_coalesced" in row else []), *row["steps"]]:
        lines.append(f"{item['events_per_s_asked']:>15,.0f} {item['events_per_s_sent']:>8,} {item['posts']:>6} "
                     f"{item['p50_s']:>7} {item['p95_s']:>7} {item['p99_s']:>7} {item['sustained']}"
                     f"{' (coalescing)' if item.get('coalesce') else ''}")
    lines.append(f"highest sustained: {row['highest_sustained_events_per_s']} events/s")
    if row["scale"]:
        lines.append("Scale-out: the same batches exported by N worker processes")
        lines.extend(f"  {item['workers']} worker(s): {item['seconds']} s, {item['events_per_s']:,} events/s"
                     for item in row["scale"])
    return lines
