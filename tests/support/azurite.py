"""Start and stop a real Azurite blob service for tests (free port, temp data folder)."""

from __future__ import annotations

import os
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


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};"
    )


def azurite_binary() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found is None:
        raise RuntimeError("azurite-blob not found: run `npm ci` in the repository root (make test does)")
    return found


@dataclass
class Azurite:
    """A running Azurite blob service; `stop()` ends it, `start()` brings it back on the same port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # With a certificate: HTTPS, and `oauth` accepts Entra ID bearer tokens (Azurite's "basic" OAuth mode).
    cert_path: Path | None = None
    key_path: Path | None = None
    oauth: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.cert_path else "http"

    @property
    def connection_string(self) -> str:
        return connection_string(self.port).replace("http", self.scheme)

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "azurite.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                azurite_binary(),
                "--blobHost", "127.0.0.1",
                "--blobPort", str(self.port),
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
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
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
