"""One measured run in a process of its own, so that its peak RSS belongs to it alone.

`python -m bench.worker` reads a job (JSON) on stdin and prints its result (JSON) as the last line
of stdout. Three kinds of job:

- ``export``: the product's export pass (``shared.export.runner.run_export_pass``) with fresh
  services built from the job's settings, exactly as a new Functions worker would run it;
- ``floor``: the least work any exporter of this data must do: download the staged bytes, stream
  them through one ``zlib.compressobj`` per file and upload them as staged blocks with the SDK;
- ``files_floor``: the same least work for many small files (the 4,000-hour shape, issue 13): each
  file's staged bytes downloaded, gzipped whole and written with one Put Blob, many files at once.
"""

from __future__ import annotations

import base64
import logging
import resource
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import psutil
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's peak resident set size so far.

    VmHWM belongs to the process's own address space. ru_maxrss would not do: Linux carries it over
    from the parent across fork and exec, so a child of a big parent would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / MB, 1)


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_export(job: dict[str, Any]) -> dict[str, Any]:
    # As deployed: the function app's packages (requirements.txt) hold no numpy, but pyarrow, when it finds numpy,
    # loads it and sets it up at its first conversion: about 55 MB more for a Parquet export. The test and bench
    # environment has numpy for pandas; the measured worker does without it, as a Functions worker does.
    sys.modules.setdefault("numpy", None)
    from shared.export.runner import run_export_pass
    from shared.services import build_services
    from shared.settings import load_settings

    services = build_services(load_settings(**job["settings"]))
    services.control.ensure_container()
    baseline = current_rss_mb()
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = run_export_pass(services, budget_seconds=job.get("budget_seconds", 3600))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    result = summary.to_json()
    result.pop("batches")
    return {"seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mb": baseline, "summary": result,
            "secret_reads": services.secrets.store_reads}


def run_floor(job: dict[str, Any]) -> dict[str, Any]:
    source = ContainerClient.from_connection_string(job["control_connection"], job["control_container"])
    target = ContainerClient.from_container_url(job["destination_url"])
    baseline = current_rss_mb()
    output = 0
    with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
        started, cpu = time.perf_counter(), cpu_seconds()
        for index, name in enumerate(job["staged"]):
            blob = target.get_blob_client(f"floor/{index:05d}.jsonl.gz")
            output += floor_copy(source.download_blob(name, max_concurrency=1).chunks(), blob, pool,
                                 block_bytes=job["block_bytes"], concurrency=job["concurrency"],
                                 level=job["gzip_level"])
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mb": baseline, "output_bytes": output,
            "files": len(job["staged"])}


def floor_copy(chunks: Iterator[bytes], blob: BlobClient, pool: ThreadPoolExecutor, *, block_bytes: int,
               concurrency: int, level: int) -> int:
    """Gzip a stream of chunks into one blob as staged blocks and one commit; return its size."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
    ids: list[str] = []
    in_flight: deque[Future[Any]] = deque()
    buffer = bytearray()
    size = 0

    def stage(data: bytes) -> None:
        ident = base64.b64encode(f"{len(ids):08d}".encode()).decode()
        ids.append(ident)
        while len(in_flight) >= concurrency:
            in_flight.popleft().result()
        in_flight.append(pool.submit(blob.stage_block, ident, data, length=len(data)))

    for chunk in chunks:
        buffer += deflate.compress(chunk)
        while len(buffer) >= block_bytes:
            stage(bytes(buffer[:block_bytes]))
            size += block_bytes
            del buffer[:block_bytes]
    buffer += deflate.flush()
    stage(bytes(buffer))
    size += len(buffer)
    while in_flight:
        in_flight.popleft().result()
    blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
    return size


class StagedSource:
    """Staged bytes read for the files floor: a blob that backs one file is read as that file's range; a blob
    that backs several (staging one blob per batch) is read once, kept while its files use it, then dropped."""

    def __init__(self, container: ContainerClient, files: list[dict[str, Any]]):
        self.container = container
        self.uses = Counter(item["blob"] for item in files)
        self.kept: dict[str, bytes] = {}
        self.locks = {name: threading.Lock() for name in self.uses}

    def read(self, blob: str, offset: int, length: int) -> bytes:
        if self.uses[blob] == 1:
            return self.container.download_blob(blob, offset=offset, length=length, max_concurrency=1).readall()
        with self.locks[blob]:
            data = self.kept.get(blob)
            if data is None:
                data = self.kept[blob] = self.container.download_blob(blob, max_concurrency=1).readall()
            self.uses[blob] -= 1
            if self.uses[blob] == 0:
                del self.kept[blob]
        return data[offset:offset + length]


def run_files_floor(job: dict[str, Any]) -> dict[str, Any]:
    """Every file of `job["files"]` (name, staged blob, offset, length): read, gzip whole, one Put Blob each,
    `concurrency` files at once. Nothing else: no state, no manifest, no checksum."""
    from shared.control.store import pooled_transport  # the product's transport: the floor's HTTP costs the same

    connections = job["concurrency"]
    source = StagedSource(ContainerClient.from_connection_string(
        job["control_connection"], job["control_container"], transport=pooled_transport(connections)), job["files"])
    target = ContainerClient.from_container_url(job["destination_url"], transport=pooled_transport(connections))
    settings = ContentSettings(content_type="application/gzip")
    level = job["gzip_level"]

    def write(item: dict[str, Any]) -> int:
        deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
        data = deflate.compress(source.read(item["blob"], item["offset"], item["length"])) + deflate.flush()
        target.upload_blob(item["name"], data, length=len(data), overwrite=True, content_settings=settings)
        return len(data)

    baseline = current_rss_mb()
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="floor") as pool:
        started, cpu = time.perf_counter(), cpu_seconds()
        output = sum(pool.map(write, job["files"]))
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mb": baseline, "output_bytes": output,
            "files": len(job["files"])}


JOBS = {"export": run_export, "floor": run_floor, "files_floor": run_files_floor}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    job = orjson.loads(sys.stdin.buffer.read())
    result = JOBS[job["kind"]](job)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
