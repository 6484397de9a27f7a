"""Run `make` targets and local scripts as a user would, in an environment of the test's own: its Azurite port,
data folder and secret store, none of the developer's local settings, no enclosing `make test`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from scripts.local_settings import REPO_ROOT

# The test runs in an installed tree: make must not reinstall (that would reach PyPI and npm).
NO_INSTALL = ("-o", ".venv/.installed", "-o", "node_modules/.installed")
# Settings a developer's shell may hold that would point the run elsewhere.
DROPPED = ("AzureWebJobsStorage", "CONTROL_STORAGE_CONNECTION", "CONTROL_STORAGE_ACCOUNT_URL",
           "AzureWebJobsStorage__blobServiceUri", "KEY_VAULT_URL", "LOCAL_INTAKE_KEY", "LOCAL_ADMIN_KEY",
           "CONTROL_CONTAINER", "AZURITE_PORT", "AZURITE_DIR", "PORT",
           "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")

# Loaded by every Python process of the run (sitecustomize on PYTHONPATH): records each socket.connect.
CONNECT_RECORDER = '''
import os, sys

def _record(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and len(args[1]) >= 2:
        with open(os.environ["CONNECT_LOG"], "a") as log:
            log.write(f"{os.getpid()} {args[1][0]} {args[1][1]}\\n")

sys.addaudithook(_record)
'''


def local_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in DROPPED}
    env.update({"AZURITE_DIR": str(tmp_path / "azurite"), "LOCAL_SECRETS_PATH": str(tmp_path / "dev-secrets.json"),
                **values})
    return env


def make(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *NO_INSTALL, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def script(module: str, *args: str, env: dict[str, str], stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def stop_azurite(env: dict[str, str]) -> None:
    """Stop the Azurite a make target started for this test (only ever one in the test's own folder)."""
    script("scripts.local_azurite", "stop", "--all", env=env, timeout=60)


def recording_connects(tmp_path: Path, env: dict[str, str]) -> Path:
    """Make every Python process started with `env` append the address of each connect() to the file returned."""
    hook_dir = tmp_path / "connect-recorder"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(CONNECT_RECORDER)
    log = tmp_path / "connects.log"
    log.touch()
    env["CONNECT_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook_dir), env.get("PYTHONPATH")]))
    return log


def connected_ports(log: Path) -> list[int]:
    return [int(line.split()[2]) for line in log.read_text().splitlines()]


class Listener:
    """A TCP listener that records every connection it is offered, with the connecting process when the
    system can tell (the machine is shared: someone else's `make demo` may knock on 10000 too)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.peers: list[tuple[int, int | None]] = []  # (peer port, peer pid or None)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append((peer[1], _pid_of(peer[1], self.sock.getsockname()[1])))
            connection.close()

    def connections_from(self, root_pid: int) -> list[tuple[int, int | None]]:
        """The connections made by `root_pid`'s process tree, or by a process the system would not name."""
        return [(port, pid) for port, pid in self.peers if pid is None or _descends_from(pid, root_pid)]


def _pid_of(local_port: int, remote_port: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == local_port and conn.raddr and conn.raddr.port == remote_port:
                return conn.pid
    return None


def _descends_from(pid: int, root_pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return pid == root_pid or any(parent.pid == root_pid for parent in psutil.Process(pid).parents())
    return True  # gone already: it may have been ours


@contextmanager
def listening_on(port: int) -> Iterator[Listener | None]:
    """A recording listener on 127.0.0.1:`port`, or None when the port is taken (by someone else's Azurite)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        yield None
        return
    sock.listen(16)
    try:
        yield Listener(sock)
    finally:
        sock.close()
