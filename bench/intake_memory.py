"""Intake memory: how much the server's resident set grows while it takes one large body, per body kind.

Each kind is measured in a server process of its own (the product's API under uvicorn, control storage on the
given account): a destination is created and a small batch of the same kind posted (imports, threads and
clients warm), the process's resident set is read, then the large body is posted (202 expected) and the
process's high-water mark (`VmHWM`) read. growth / the body's inflated size is what the targets bound: at most
1.5 for NDJSON, plain or gzip, and 2 for a JSON array (issue 11).

`python bench/intake_memory.py serve ...` is the server process. It runs as a script so that `--code-root`
can point it at another tree of the product: the "before" figures come from an older commit in a git worktree.
`make bench` measures 90 MiB bodies; `tests/bench/test_intake_memory.py` smaller ones, in seconds.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
KINDS = ("ndjson", "ndjson+gzip", "json-array")
TARGETS = {"ndjson": 1.5, "ndjson+gzip": 1.5, "json-array": 2.0}  # peak RSS growth / inflated body


@dataclass(frozen=True)
class Body:
    kind: str
    content: bytes
    headers: dict[str, str]
    inflated: int


def make_body(kind: str, size: int, *, seed: int = 7) -> Body:
    """About `size` bytes (inflated) of the benchmark's events, over 2 UTC hours (two partitions)."""
    from scripts import sample_data

    lines: list[bytes] = []
    total = 0
    count = max(1, size // 270)
    while total < size:
        for record in sample_data.events(count, seed=seed, hours=2, shapes=("clevertap", "mixpanel", "segment")):
            line = sample_data.ndjson([record])
            lines.append(line)
            total += len(line)
            if total >= size:
                break
        seed += 1
    ndjson = b"".join(lines)
    del lines
    if kind == "ndjson":
        return Body(kind, ndjson, {"content-type": "application/x-ndjson"}, len(ndjson))
    if kind == "ndjson+gzip":
        return Body(kind, gzip.compress(ndjson, 1), {"content-type": "application/x-ndjson",
                                                    "content-encoding": "gzip"}, len(ndjson))
    if kind == "json-array":
        array = b"[" + ndjson.rstrip(b"\n").replace(b"\n", b",\n") + b"]"
        return Body(kind, array, {"content-type": "application/json"}, len(array))
    raise ValueError(f"unknown body kind {kind!r}")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def measure(connection_string: str, kind: str, size: int, *, code_root: Path = REPO_ROOT,
            work_dir: Path, max_request_bytes: int | None = None) -> dict[str, Any]:
    """One body of `kind` and about `size` bytes posted to a fresh server process; its peak RSS growth."""
    import httpx
    from azure.storage.blob import BlobServiceClient

    from bench.workload import container_sas_url

    body = make_body(kind, size)
    warm = make_body(kind, 64 * 1024, seed=99)
    service = BlobServiceClient.from_connection_string(connection_string)
    run = uuid.uuid4().hex[:12]
    control, destination = f"intmem-{run}-ctl", f"intmem-{run}-out"
    service.create_container(destination)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(code_root), "CONTROL_STORAGE_CONNECTION": connection_string,
           "CONTROL_CONTAINER": control, "LOCAL_SECRETS_PATH": str(work_dir / f"{run}-secrets.json"),
           "ALLOW_HTTP_LOOPBACK": "true", "LOG_LEVEL": "WARNING",
           "MAX_REQUEST_BYTES": str(max_request_bytes or max(100 * MB, body.inflated + MB))}
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port)],
                              env=env, cwd=str(code_root))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            wait_until_up(client, server)
            account_url, token = container_sas_url(service, destination)
            response = client.put("/api/destinations/mem", json={
                "endpoint": account_url, "container": destination, "format": "jsonl", "compression": "gzip",
                "auth": {"type": "sas", "sas_token": token}})
            if response.status_code not in (200, 201):
                raise RuntimeError(f"could not create the destination: {response.text[:300]}")
            url = "/api/destinations/mem/batches"
            response = client.post(url, params={"type": "events"}, content=warm.content, headers=warm.headers)
            if response.status_code != 202:
                raise RuntimeError(f"the warm-up batch was refused: {response.text[:300]}")
            baseline_kib = _status_kib(server.pid, "VmRSS")
            started = time.perf_counter()
            response = client.post(url, params={"type": "events"}, content=body.content, headers=body.headers)
            seconds = time.perf_counter() - started
            peak_kib = _status_kib(server.pid, "VmHWM")
        growth_mb = (peak_kib - baseline_kib) / 1024
        return {"kind": kind, "status": response.status_code, "body_mb": round(len(body.content) / MB, 2),
                "inflated_mb": round(body.inflated / MB, 2), "baseline_rss_mb": round(baseline_kib / 1024, 1),
                "peak_rss_mb": round(peak_kib / 1024, 1), "growth_mb": round(growth_mb, 1),
                "ratio": round(growth_mb * MB / body.inflated, 2), "target": TARGETS[kind],
                "seconds": round(seconds, 2),
                "records": response.json().get("records") if response.status_code == 202 else None,
                "error": None if response.status_code == 202 else response.text[:300]}
    finally:
        server.terminate()
        server.wait(timeout=30)
        for name in (control, destination):
            try:
                service.delete_container(name)
            except Exception:  # cleanup is best effort
                continue


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(client: Any, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the intake server exited with {server.returncode}")
        try:
            client.get("/api/openapi.json", timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError("the intake server did not start") from None
            time.sleep(0.1)


def serve(port: int) -> None:
    """The server process: the product's API with settings from the environment, until terminated."""
    import uvicorn

    from shared.api.app import create_api
    from shared.services import build_services
    from shared.settings import load_settings

    services = build_services(load_settings())
    uvicorn.run(create_api(lambda: services), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        lines.append(f"intake memory: {row['kind']:<12} {row['inflated_mb']:>6.1f} MiB inflated "
                     f"({row['body_mb']:.1f} MiB sent): peak RSS +{row['growth_mb']:.0f} MB = {row['ratio']:.2f}x "
                     f"the body (target <= {row['target']}x), {row['seconds']:.1f} s, HTTP {row['status']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    served = sub.add_parser("serve")
    served.add_argument("--port", type=int, required=True)
    measured = sub.add_parser("measure")
    measured.add_argument("--connection-string", required=True)
    measured.add_argument("--mib", type=float, default=90)
    measured.add_argument("--kind", action="append", choices=KINDS)
    measured.add_argument("--code-root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port)
        return
    import tempfile

    sys.path.insert(0, str(REPO_ROOT))
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(args.connection_string, kind, int(args.mib * MB), code_root=args.code_root,
                        work_dir=Path(work)) for kind in args.kind or KINDS]
    print("\n".join(format_rows(rows)))


if __name__ == "__main__":
    main()
