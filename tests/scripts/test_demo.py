"""The demo's flow (run_demo, what `make demo` runs) against the test Azurite: what it prints is what landed."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import demo
from scripts.demo import DemoResult, run_demo
from scripts.local_settings import REPO_ROOT
from tests.scripts.local_env import (
    NO_INSTALL,
    connected_ports,
    listening_on,
    local_env,
    make,
    recording_connects,
    script,
    stop_azurite,
)
from tests.scripts.readme_text import demo_excerpt, shape
from tests.shared.export_helpers import data_files, jsonl_records, manifests, read_blob
from tests.support import secret_watch
from tests.support.azurite import Azurite, free_port_triple

DIRECTORY = re.compile(r"^    (\S.*/)$")
FILE = re.compile(r"^        (\S+)\s+([\d,]+) records\s+([\d,]+) bytes")
EVENTS, PROFILES = 600, 200


def printed_files(lines: list[str]) -> dict[str, tuple[int, int]]:
    """File name -> (records, bytes), read back from the blob tree the demo printed."""
    files: dict[str, tuple[int, int]] = {}
    directory = ""
    for line in lines:
        if found := DIRECTORY.match(line):
            directory = found.group(1)
        elif found := FILE.match(line):
            records, size = (int(found.group(n).replace(",", "")) for n in (2, 3))
            files[directory + found.group(1)] = (records, size)
    return files


def run(azurite: Azurite, tmp_path: Path, control: str, container: str) -> tuple[DemoResult, list[str]]:
    lines: list[str] = []
    result = run_demo(azurite.connection_string, azurite.account_url, out=lines.append, control_container=control,
                      secrets_path=tmp_path / "dev-secrets.json", container=container, events=EVENTS,
                      profiles=PROFILES)
    return result, lines


def test_demo_prints_what_landed_and_a_second_run_adds_batches_without_duplicates(
    azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    control, name = f"ctl-{uuid.uuid4().hex[:16]}", f"demo-{uuid.uuid4().hex[:16]}"
    container = blob_service.get_container_client(name)
    seen_batches: set[str] = set()
    first_files: dict[str, bytes] = {}
    try:
        for number in (1, 2):
            result, lines = run(azurite, tmp_path, control, name)
            assert result.ok, result.problems
            assert result.run == number - 1
            assert any(line.startswith(f"OK: run {number} landed") for line in lines)
            assert [s["state"] for s in result.batches] == ["landed", "landed"]
            ids = {s["batch_id"] for s in result.batches}
            assert not ids & seen_batches, "the second run must add new batches"
            seen_batches |= ids
            assert sum(1 for line in lines if re.match(r"^  ok \S+: landed", line)) == 2

            # What it printed about the files is what the container holds: names, record counts, sizes.
            actual = {
                blob.name: (len(read_blob(container, blob.name).splitlines()), blob.size)
                for blob in container.list_blobs() if blob.name in set(data_files(container))
            }
            assert printed_files(lines) == actual
            assert {f.name: f.records for f in result.files} == {n: r for n, (r, _) in actual.items()}

            # Everything accepted landed exactly once, by counting.
            records = jsonl_records(container)
            assert len(records) == number * (EVENTS + PROFILES) == result.counted_records == result.accepted_records
            texts = [repr(sorted(r.items())) for r in records]
            assert len(set(texts)) == len(texts), "a record landed twice"
            found = manifests(container)
            assert sorted(m["batch_id"] for m in found) == sorted(seen_batches)
            assert sum(m["records"] for m in found) == len(records)

            if number == 1:
                first_files = {n: container.download_blob(n).readall() for n in data_files(container)}
            else:  # the first run's files are untouched
                assert {n: container.download_blob(n).readall() for n in first_files} == first_files
                assert len(data_files(container)) > len(first_files)
    finally:
        container.delete_container()
        blob_service.delete_container(control)


def test_demo_is_not_ok_when_a_batch_does_not_land(
    azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the demo registers its destination, the credentials are replaced by a forged SAS saved without the
    probe (`?verify=false`): the storage rejects every write, and the demo must say so."""
    real_register = demo.register_destination

    def register_then_forge(api: httpx.Client, destination: ContainerClient, connection_string: str,
                            account_url: str, destination_id: str, out: demo.Out) -> None:
        real_register(api, destination, connection_string, account_url, destination_id, out)
        token = demo.container_sas(connection_string, destination.container_name, datetime.now(UTC))
        forged = re.sub(r"sig=[^&]+", "sig=" + quote(base64.b64encode(bytes(32)).decode(), safe=""), token)
        body = {"endpoint": account_url, "container": destination.container_name,
                "auth": {"type": "sas", "sas_token": secret_watch.register(forged, "forged SAS")}}
        assert api.put(f"/api/destinations/{destination_id}", params={"verify": "false"}, json=body).is_success

    monkeypatch.setattr(demo, "register_destination", register_then_forge)
    control, name = f"ctl-{uuid.uuid4().hex[:16]}", f"demo-{uuid.uuid4().hex[:16]}"
    try:
        result, lines = run(azurite, tmp_path, control, name)
    finally:
        blob_service.delete_container(name)
        blob_service.delete_container(control)
    assert not result.ok
    assert [s["state"] for s in result.batches] == ["failed", "failed"]
    assert all(s["last_error"]["code"] == "authentication_failed" for s in result.batches)
    problems = [line for line in lines if line.startswith("PROBLEM: batch")]
    assert len(problems) == 2 and all("authentication failed" in line for line in problems)
    assert not any(line.startswith("OK:") for line in lines)


# --- `make demo` on the ports a user picks -------------------------------------------------------------------

AZURITE_DEFAULT_PORT = 10000


def test_make_demo_on_a_free_azurite_port_sends_nothing_to_port_10000(tmp_path: Path) -> None:
    """AZURITE_PORT=<free port> make demo: it starts this checkout's Azurite on that port, the demo succeeds
    against it, and no process of the run connects to 10000 (a listener there counts the attempts when the port
    is free; every Python process records its connects either way)."""
    port = free_port_triple()  # Azurite takes the next two ports too (queues, tables)
    env = local_env(tmp_path, AZURITE_PORT=str(port))
    connects = recording_connects(tmp_path, env)
    try:
        with listening_on(AZURITE_DEFAULT_PORT) as port_10000:
            process = subprocess.Popen(["make", "--no-print-directory", *NO_INSTALL, "demo"], cwd=REPO_ROOT, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stdout + stderr
            if port_10000 is not None:
                assert port_10000.connections_from(process.pid) == [], "the run connected to 127.0.0.1:10000"
    finally:
        stop_azurite(env)
    assert f"Started: http://127.0.0.1:{port}/devstoreaccount1, this checkout's Azurite (pid" in stdout
    assert f"Using http://127.0.0.1:{port}/devstoreaccount1, this checkout's Azurite (pid" in stdout
    assert "OK: run 1 landed 4,000 new records" in stdout
    ports = connected_ports(connects)
    assert port in ports, "the connect recorder saw nothing: it is not watching the run"
    assert AZURITE_DEFAULT_PORT not in ports, stdout

    # The README's excerpt is what a first run prints (ids, numbers, folders and spacing aside).
    printed = {shape(line) for line in (stdout + stderr).splitlines()}  # as a terminal shows it
    assert [line for line in demo_excerpt() if shape(line) not in printed] == [], stdout + stderr


def test_make_demo_refuses_an_azurite_this_checkout_did_not_start(
    azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    """The session's Azurite is a real one that `make azurite-start` did not start: `make demo` on its port says
    so, names the port and how to pick another, and writes nothing into it; so does the demo run on its own,
    even with a pid file that names that very Azurite process (its data folder is not this checkout's)."""
    env = local_env(tmp_path, AZURITE_PORT=str(azurite.port))
    before = {c.name for c in blob_service.list_containers()}
    done = make("demo", env=env)
    assert done.returncode != 0
    assert f"127.0.0.1:{azurite.port} (AZURITE_PORT={azurite.port}) is held by" in done.stderr
    assert "not by this checkout's Azurite" in done.stderr
    assert re.search(r"`AZURITE_PORT=(\d+) make demo` \(\1 is free now\)", done.stderr), done.stderr
    assert "OK:" not in done.stdout

    assert azurite.process is not None
    pid_file = tmp_path / "azurite" / str(azurite.port) / "azurite.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{azurite.process.pid}\n")
    alone = script("scripts.demo", env=env)
    assert alone.returncode == 1
    assert alone.stderr.startswith(f"demo refused: 127.0.0.1:{azurite.port} (AZURITE_PORT={azurite.port})")
    assert {c.name for c in blob_service.list_containers()} == before, "the refused demo wrote into that Azurite"
    assert azurite.process.poll() is None, "a refusal must never stop the other Azurite"
