"""A benchmark run: its options, what it created (to clean up), and its measured jobs, each in a process of its own.

`run_worker` runs one job of `bench.worker` in a fresh Python process (so that its peak RSS is its own) and
adds the CPU time the local storage emulator spent meanwhile (it shares the machine's cores with the job).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import psutil
from azure.storage.blob import BlobServiceClient

from bench.profiling import profiled_command, summarize
from bench.workload import Variant, delete_variant, new_variant

REPO_ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


@dataclass
class BenchOptions:
    events: int = 1_000_000
    batch_size: int = 50_000
    memory_events: int = 100_000  # one batch this size is compared with one batch of `events`
    hours: int = 2  # the events' time span: one partition per UTC hour
    seed: int = 7
    settings: dict[str, Any] = field(default_factory=dict)  # app settings for every variant (GZIP_LEVEL=1, ...)
    profile_dir: Path | None = None  # py-spy profiles of each measured run (bench.profiling)
    repeat: int = 1  # measure each export variant this many times (restaged each time); the best counts
    keep: bool = False  # keep the containers (to look at what landed)
    intake_memory_mib: float = 90  # one body of each kind for the intake-memory rows (0: skip them)
    # The 4,000-hour shape (issue 13, bench.backfill): as many events as `events` unless given; 0 skips it.
    backfill_events: int | None = None
    backfill_hours: int = 4_000
    floor_concurrency: int = 32  # files the 4,000-hour floor writes at once
    # The small-batch shape (issue 13, bench.small_batches): 0 POSTs skips it.
    small_posts: int = 500
    small_events_per_post: int = 100
    small_destinations: int = 50
    small_clients: int = 8
    coalesce: bool = False  # send `coalesce` with the small-batch destinations (when the product accepts it)
    # Freshness and scale-out (issue 14, bench.freshness): 0 events/s skips the freshness runs, 0 batches the scale.
    freshness_rate: float = 2_000  # events/s of the steady load
    freshness_seconds: float = 60
    freshness_steps: tuple[float, ...] = (500, 1_000)  # other rates, 20 s each, for the highest sustained
    freshness_destinations: int = 20
    scale_batches: int = 500
    label: str = ""  # recorded with the results: which tree of the product they measure ("before", a commit)


@dataclass
class Run:
    """One benchmark run: its storage account, options, and everything it created (to clean up)."""

    service: BlobServiceClient
    connection_string: str
    options: BenchOptions
    work_dir: Path
    say: Callable[[str], None]
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    variants: list[Variant] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    storage: psutil.Process | None = None

    def variant(self, name: str, fmt: str, slug: str, **settings: Any) -> Variant:
        self.variants.append(new_variant(self.service, self.connection_string, self.run_id, name, fmt,
                                         self.work_dir, slug, **{**self.options.settings, **settings}))
        return self.variants[-1]

    def profile(self, name: str) -> Path | None:
        return self.options.profile_dir / name if self.options.profile_dir else None

    def drop(self, variants: tuple[Variant, ...] = (), containers: tuple[str, ...] = ()) -> None:
        """Delete what a measured shape made, unless `keep`: Azurite's every request slows as its account fills
        (it scans its blob table), and the next shape should not pay for this one's blobs."""
        if self.options.keep:
            return
        for item in variants:
            delete_variant(self.service, item)
            self.variants.remove(item)
        for name in containers:
            with contextlib.suppress(Exception):  # cleanup is best effort
                self.service.delete_container(name)
            self.containers.remove(name)

    def clean_up(self) -> None:
        for item in self.variants:
            delete_variant(self.service, item)
        for name in self.containers:
            try:
                self.service.delete_container(name)
            except Exception:  # cleanup is best effort; Azurite's data folder can always be removed
                continue


# ---------------------------------------------------------------------------------------------
# Measured runs, each in a fresh process


def storage_process(account_url: str) -> psutil.Process | None:
    """The local storage emulator's process (Azurite), to count the CPU time it spends on each run."""
    parsed = urlparse(account_url)
    if parsed.hostname not in {"127.0.0.1", "localhost"} or parsed.port is None:
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == parsed.port and conn.pid:
                return psutil.Process(conn.pid)
    except (psutil.Error, OSError):
        return None
    return None


def cpu_of(process: psutil.Process | None) -> float | None:
    """A process's CPU seconds so far (user and system), or None when it is not known."""
    try:
        return sum(process.cpu_times()[:2]) if process else None
    except psutil.Error:
        return None


def run_worker(job: dict[str, Any], storage: psutil.Process | None = None, profile: Path | None = None
               ) -> dict[str, Any]:
    """Run one measured job in a fresh Python process; return its result (with the emulator's CPU time).

    With `profile` (a path without suffix), the process runs under py-spy: `profile.folded` gets the
    collapsed stacks and `profile.txt` their summary.
    """
    command = [sys.executable, "-m", "bench.worker"]
    if profile is not None:
        command = profiled_command(command, profile.with_suffix(".folded"))
    before = cpu_of(storage)
    done = subprocess.run(command, input=orjson.dumps(job), capture_output=True, cwd=REPO_ROOT, check=False)
    after = cpu_of(storage)
    if profile is not None and done.returncode == 0:
        profile.with_suffix(".txt").write_text(summarize(profile.with_suffix(".folded")))
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker ({job['kind']}) failed:\n{done.stderr.decode()[-4000:]}")
    # The result is the last JSON line (py-spy, when profiling, writes its own lines too).
    result = dict(orjson.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith(b"{"))))
    result["storage_cpu_seconds"] = None if before is None or after is None else round(after - before, 2)
    return result

