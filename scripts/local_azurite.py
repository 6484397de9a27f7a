"""This checkout's Azurite: its port, its connection string, and whether the server on a port is ours.

    .venv/bin/python -m scripts.local_azurite start | stop [--all] | status | connection-string

`make azurite-start`, `make demo`, `make serve` and `scripts.azurite_sas` all read the port from
`AZURITE_PORT` (default 10000), so moving it moves every one of them. The app's own
`UseDevelopmentStorage=true` always means 127.0.0.1:10000 to the storage SDK, so local tools replace it
with `connection_string(port)` (`use_azurite_port`).

Ownership: `start` runs Azurite with its data in `AZURITE_DIR/<port>` (default `.local/azurite/<port>`)
and writes the process id beside it. A server on the port is this checkout's only if that pid file names
a live process that runs azurite on that port with exactly that data folder and listens on the port.
Azurite serves blobs on the port and queues (the export queue, issue 14) on the port + 1, its tables (unused)
on the port + 2: the ports `UseDevelopmentStorage=true` names are 10000, 10001 and 10002 in the same order.
Anything else there (another checkout's Azurite, a Docker one, another program) is foreign: `start` and
the demo refuse it, naming the port and how to pick another, because a demo writing into someone else's
emulator mixes its destinations, batches and secrets with theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEFAULT_PORT = 10000
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key: public, documented by Microsoft, not a secret.
# Still never printed: banners show endpoints only.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = "usedevelopmentstorage=true"
# The settings that may hold control storage's connection string, in the order the app reads them.
CONTROL_STORAGE_SETTINGS = ("CONTROL_STORAGE_CONNECTION", "AzureWebJobsStorage")
PID_FILE = "azurite.pid"
START_SECONDS = 30.0


class AzuriteError(RuntimeError):
    """A local Azurite problem, in words that say what to do."""


# --- ports and connection strings ------------------------------------------------------------------------


def port_from_env(environ: Mapping[str, str] | None = None) -> int:
    """AZURITE_PORT, or 10000 (Azurite's own default) when unset or empty."""
    env = os.environ if environ is None else environ
    text = env.get("AZURITE_PORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise AzuriteError(f"AZURITE_PORT={text!r} is not a TCP port (a whole number 1-65535)")
    return int(text)


def azurite_root(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding each port's Azurite data: AZURITE_DIR, or .local/azurite in this checkout."""
    env = os.environ if environ is None else environ
    text = env.get("AZURITE_DIR", "").strip()
    return Path(text).resolve() if text else REPO_ROOT / ".local" / "azurite"


def data_dir(port: int, root: Path) -> Path:
    return root / str(port)


def account_url(port: int) -> str:
    return f"http://{HOST}:{port}/{ACCOUNT}"


def queue_port(port: int) -> int:
    """The queue service's port beside the blob service on `port`."""
    return port + 1


def connection_string(port: int) -> str:
    """What `UseDevelopmentStorage=true` means, on `port` (and the next, for queues) instead of 10000."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={account_url(port)};QueueEndpoint=http://{HOST}:{queue_port(port)}/{ACCOUNT};")


def is_development_storage(value: str) -> bool:
    return value.strip().rstrip(";").lower() == DEVELOPMENT_STORAGE


def use_azurite_port(environ: MutableMapping[str, str], port: int) -> list[str]:
    """Replace `UseDevelopmentStorage=true` in the control storage settings by the explicit connection string
    of the Azurite on `port`; return the names replaced."""
    replaced = []
    for name in CONTROL_STORAGE_SETTINGS:
        if is_development_storage(environ.get(name, "")):
            environ[name] = connection_string(port)
            replaced.append(name)
    return replaced


def listening(port: int) -> bool:
    """Does something accept TCP connections on 127.0.0.1:`port`?"""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def suggest_port(taken: int) -> int:
    """A port that is free now, near Azurite's own range, for the refusal message."""
    for port in range(10100, 10200, 3):  # with its queue and table ports beside it
        if port != taken and all(bindable(p) for p in (port, port + 1, port + 2)):
            return port
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- whose server is on a port ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ours:
    """A process `start` launched: its pid file, and the port and data folder on its command line."""

    pid: int
    port: int
    data: Path
    pid_file: Path
    queues: bool = True  # False: an azurite-blob from before the export queue, restarted by `start`


def _argument(command: list[str], flag: str) -> str | None:
    for index, part in enumerate(command[:-1]):
        if part == flag:
            return command[index + 1]
    return None


def _process_of(pid_file: Path) -> Ours | None:
    """The live Azurite process `pid_file` names, if its data folder is the pid file's folder."""
    try:
        pid = int(pid_file.read_text().strip())
        process = psutil.Process(pid)
        command = process.cmdline()
        cwd = Path(process.cwd())
    except (OSError, ValueError, psutil.Error):
        return None
    names = {Path(part).name for part in command[:2]}
    if not names & {"azurite", "azurite-blob"}:
        return None
    location, port = _argument(command, "--location"), _argument(command, "--blobPort")
    if location is None or port is None or not port.isdigit():
        return None
    if (cwd / location).resolve() != pid_file.parent.resolve():
        return None
    queues = "azurite" in names and _argument(command, "--queuePort") == str(queue_port(int(port)))
    return Ours(pid=pid, port=int(port), data=pid_file.parent, pid_file=pid_file, queues=queues)


def _pid_files(root: Path) -> Iterator[Path]:
    yield from sorted(root.glob(f"*/{PID_FILE}"))
    yield root / PID_FILE  # where the Makefile kept it before ports had their own folders


def our_processes(root: Path) -> list[Ours]:
    return [ours for pid_file in _pid_files(root) if (ours := _process_of(pid_file)) is not None]


def _listens_on(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def _listener_name(port: int) -> str:
    """'pid 123 (node)' for the process listening on `port`, when the system says; never its command line,
    which may carry someone's secrets."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    return "a process this checkout did not start"


@dataclass(frozen=True)
class PortState:
    port: int
    state: Literal["free", "ours", "foreign"]
    ours: Ours | None = None
    listener: str = ""

    def owner(self) -> str:
        """Whose server this is, for people (never a key)."""
        if self.state == "ours" and self.ours is not None:
            return f"this checkout's Azurite (pid {self.ours.pid}, data in {_shown(self.ours.data)})"
        if self.state == "foreign":
            return f"NOT this checkout's Azurite ({self.listener} listens there)"
        return "nothing listens there"

    def describe(self) -> str:
        return f"{account_url(self.port)}, {self.owner()}"


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def inspect(port: int, root: Path) -> PortState:
    """Is 127.0.0.1:`port` free, served by this checkout's Azurite, or by something else?"""
    if not listening(port):
        return PortState(port, "free")
    for ours in our_processes(root):
        if ours.port == port and _listens_on(ours.pid, port):
            return PortState(port, "ours", ours=ours)
    return PortState(port, "foreign", listener=_listener_name(port))


def foreign_message(port: int, command: str = "make demo") -> str:
    listener = _listener_name(port)
    other = suggest_port(port)
    return (
        f"127.0.0.1:{port} (AZURITE_PORT={port}) is held by {listener}, not by this checkout's Azurite: "
        f"it may be another project's emulator, and {command} will not mix its destinations, batches and "
        f"secrets into it. Pick another port for this checkout, e.g. `AZURITE_PORT={other} {command}` ({other} "
        f"is free now), and give the same AZURITE_PORT to make serve and the README's commands; or stop "
        f"whatever listens on {port}."
    )


# --- start and stop -------------------------------------------------------------------------------------


def azurite_binary() -> Path:
    binary = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise AzuriteError("node_modules/.bin/azurite is missing: run `make install` (npm ci)")
    return binary


@contextlib.contextmanager
def _start_lock(folder: Path) -> Iterator[None]:
    """One `start` per port at a time: two at once would both launch, and one pid file would name a loser."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(port: int, root: Path, *, command: str = "make demo") -> PortState:
    """Start this checkout's Azurite on `port`, or find it running; refuse a port someone else holds."""
    folder = data_dir(port, root)
    with _start_lock(folder):
        state = inspect(port, root)
        if state.state == "foreign":
            raise AzuriteError(foreign_message(port, command))
        if state.state == "ours" and state.ours is not None and state.ours.queues:
            return state
        if state.ours is not None:  # ours, from before the export queue: blobs only; its data stays
            _terminate(state.ours.pid)
            _wait_until_free(port)
        for extra in (queue_port(port), queue_port(port) + 1):
            if listening(extra):  # (not `bindable`: a port a client just closed is not bindable for a while)
                raise AzuriteError(f"127.0.0.1:{extra} is held by {_listener_name(extra)}: Azurite on "
                                   f"AZURITE_PORT={port} serves queues on {queue_port(port)} and tables on "
                                   f"{queue_port(port) + 1}. Pick another AZURITE_PORT, e.g. "
                                   f"AZURITE_PORT={suggest_port(port)}")
        with open(folder / "azurite.log", "ab") as log:
            process = subprocess.Popen(
                [str(azurite_binary()), "--blobHost", HOST, "--blobPort", str(port),
                 "--queueHost", HOST, "--queuePort", str(queue_port(port)),
                 "--tableHost", HOST, "--tablePort", str(queue_port(port) + 1), "--location", str(folder),
                 "--disableTelemetry", "--skipApiVersionCheck", "--loose"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                env={**os.environ, "NODE_NO_WARNINGS": "1"}, start_new_session=True,  # outlives make
            )
        (folder / PID_FILE).write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                (folder / PID_FILE).unlink(missing_ok=True)
                raise AzuriteError(f"Azurite exited at start (code {process.returncode}); its log: "
                                   f"{_shown(folder / 'azurite.log')}")
            state = inspect(port, root)
            if state.state == "ours":
                process.returncode = 0  # it runs on in its own session; no "still running" warning
                return state
            if state.state == "foreign":  # someone took the port between the check and the start
                break
            time.sleep(0.1)
        _terminate(process.pid)
        (folder / PID_FILE).unlink(missing_ok=True)
        raise AzuriteError(f"Azurite did not listen on {HOST}:{port} within {START_SECONDS:.0f} s; its log: "
                           f"{_shown(folder / 'azurite.log')}")


def _wait_until_free(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def _terminate(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def stop(port: int | None, root: Path) -> list[Ours]:
    """Stop this checkout's Azurite on `port` (None: every one of them); never a process it did not start."""
    stopped = []
    for ours in our_processes(root):
        if port is None or ours.port == port:
            _terminate(ours.pid)
            ours.pid_file.unlink(missing_ok=True)
            stopped.append(ours)
    return stopped


# --- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="start this checkout's Azurite on AZURITE_PORT (or say it runs)")
    start_parser.add_argument("--for", dest="for_command", default="make demo",
                              help="the command to name in a refusal (make demo, make serve...)")
    stop_parser = commands.add_parser("stop", help="stop this checkout's Azurite on AZURITE_PORT")
    stop_parser.add_argument("--all", action="store_true", help="every Azurite this checkout started, any port")
    commands.add_parser("status", help="say whose server listens on AZURITE_PORT (exit 1 if not this checkout's)")
    commands.add_parser("connection-string", help="print the connection string of the Azurite on AZURITE_PORT")
    args = parser.parse_args(argv)
    try:
        port, root = port_from_env(), azurite_root()
        if args.command == "connection-string":
            print(connection_string(port))
            return 0
        if args.command == "status":
            state = inspect(port, root)
            print(state.describe())
            return 0 if state.state == "ours" else 1
        if args.command == "stop":
            stopped = stop(None if args.all else port, root)
            for ours in stopped:
                print(f"Stopped this checkout's Azurite on {HOST}:{ours.port} (pid {ours.pid})")
            if not stopped:
                print(f"No Azurite of this checkout runs{'' if args.all else f' on {HOST}:{port}'}")
            return 0
        already = inspect(port, root).state == "ours"
        state = start(port, root, command=args.for_command)
        print(f"{'Already running' if already else 'Started'}: {state.describe()}", flush=True)
        return 0
    except AzuriteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
