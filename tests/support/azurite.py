"""Start and stop a real Azurite for tests: its blob and queue services (free ports, temp data folder)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_ports() -> range:
    """The ports the kernel hands out to outgoing connections (ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_port_triple() -> int:
    """A free port whose next two are free too: Azurite's blob, queue and table ports side by side, as
    `UseDevelopmentStorage=true` (10000-10002) and `scripts.local_azurite` lay them out. Picked outside the
    kernel's ephemeral range: `make test` runs in several processes, and an outgoing connection of another one
    took the port after the blob port between this check and Azurite's bind (EADDRINUSE)."""
    ephemeral = _ephemeral_ports()
    while True:
        port = random.randrange(11_000, 65_530)
        if {port, port + 1, port + 2}.isdisjoint(ephemeral) and all(_bindable(p) for p in (port, port + 1, port + 2)):
            return port


def connection_string(port: int, host: str = "127.0.0.1", queue_port: int | None = None) -> str:
    """Blob endpoint on `port`; with `queue_port`, the queue endpoint too (the export queue of issue 14)."""
    queue = f"QueueEndpoint=http://{host}:{queue_port}/{ACCOUNT_NAME};" if queue_port is not None else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};{queue}"
    )


def azurite_binary() -> str:
    """`azurite`: the blob, queue and table services in one process (the tests use blob and queue)."""
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found is None:
        raise RuntimeError("azurite not found: run `npm ci` in the repository root (make test does)")
    return found


@dataclass
class Azurite:
    """A running Azurite (blob and queue); `stop()` ends it, `start()` brings it back on the same ports."""

    data_dir: Path
    port: int = field(default_factory=free_port_triple)  # the blob service's; queues on the next, tables after
    queue_port: int = -1
    table_port: int = -1  # unused, but `azurite` starts its table service too
    process: subprocess.Popen[bytes] | None = None
    # With a certificate: HTTPS, and `oauth` accepts Entra ID bearer tokens (Azurite's "basic" OAuth mode).
    cert_path: Path | None = None
    key_path: Path | None = None
    oauth: bool = False

    def __post_init__(self) -> None:
        self.queue_port = self.port + 1 if self.queue_port < 0 else self.queue_port
        self.table_port = self.port + 2 if self.table_port < 0 else self.table_port

    @property
    def scheme(self) -> str:
        return "https" if self.cert_path else "http"

    @property
    def connection_string(self) -> str:
        return connection_string(self.port, queue_port=self.queue_port).replace("http", self.scheme)

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "azurite.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                azurite_binary(),
                "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
                "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
                "--location", str(self.data_dir),
                "--disableTelemetry", "--skipApiVersionCheck", "--loose",
                *(["--cert", str(self.cert_path), "--key", str(self.key_path)] if self.cert_path else []),
                *(["--oauth", "basic"] if self.oauth else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited early; see {self.data_dir / 'azurite.log'}")
            try:
                for port in (self.port, self.queue_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
