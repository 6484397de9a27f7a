"""`make serve`: the API under uvicorn with the timer in-process, settings from local.settings.json(.example)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from scripts.local_server import free_port
from scripts.local_settings import REPO_ROOT, apply_values, find_settings_file, init, read_values
from scripts.ncrontab import parse_schedule
from scripts.sample_data import events, ndjson
from scripts.scheduler import ScheduledJob
from shared.settings import Settings
from tests.scripts.local_env import NO_INSTALL, local_env, stop_azurite
from tests.support import secret_watch
from tests.support.azurite import ACCOUNT_KEY, Azurite, free_port_triple
from tests.support.sas import container_sas, sas_destination


def test_settings_come_from_the_local_settings_file_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text('{"IsEncrypted": false, "Values": {"EXPORT_SCHEDULE": "0 */1 * * * *", "KEY_VAULT_URL": "",'
                    ' "MAX_ATTEMPTS": 3}}')
    environ = {"EXPORT_SCHEDULE": "*/30 * * * * *"}
    assert apply_values(read_values(path), environ) == ["KEY_VAULT_URL", "MAX_ATTEMPTS"]
    assert environ == {"EXPORT_SCHEDULE": "*/30 * * * * *", "KEY_VAULT_URL": "", "MAX_ATTEMPTS": "3"}
    assert find_settings_file(tmp_path) == path
    (tmp_path / "local.settings.json").rename(tmp_path / "local.settings.json.example")
    assert find_settings_file(tmp_path).name == "local.settings.json.example"


def test_the_example_settings_name_every_app_setting_and_are_valid() -> None:
    values = read_values(REPO_ROOT / "local.settings.json.example")
    optional = {"CONTROL_STORAGE_CONNECTION", "CONTROL_STORAGE_ACCOUNT_URL",  # AzureWebJobsStorage stands in
                "CONTROL_QUEUE_ACCOUNT_URL",  # identity-based only
                "LOCAL_INTAKE_KEY", "LOCAL_ADMIN_KEY"}  # unset: `make serve` checks no function keys
    names = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}  # type: ignore[union-attr]
    assert names - optional <= set(values)
    assert not {name: values[name] for name in ("LOCAL_INTAKE_KEY", "LOCAL_ADMIN_KEY") if values.get(name)}
    parse_schedule(values["EXPORT_SCHEDULE"])


def test_the_readme_documents_every_app_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for field in Settings.model_fields.values():
        for name in field.validation_alias.choices:  # type: ignore[union-attr]
            assert f"`{name}`" in readme, f"README.md does not document {name}"


def test_the_scheduled_job_runs_on_the_schedule_and_survives_a_failing_run() -> None:
    calls: list[datetime] = []

    def job() -> None:
        calls.append(datetime.now(UTC))
        if len(calls) == 1:
            raise RuntimeError("control storage is down")

    timer = ScheduledJob(parse_schedule("* * * * * *"), job)
    timer.start()
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    timer.stop()
    assert len(calls) >= 2, "the timer must keep running after a failing run"
    assert timer.runs >= 2
    assert calls[0].replace(microsecond=0) < calls[1].replace(microsecond=0), "one run per occurrence"


@contextmanager
def serving(azurite: Azurite, tmp_path: Path, **settings: str) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """`python -m scripts.serve` in a subprocess on a free port, with these settings over the test's own."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **{name: value for name, value in os.environ.items() if name != "AZURITE_PORT"},  # `make test` sets it
        "AzureWebJobsStorage": azurite.connection_string,
        "CONTROL_CONTAINER": f"ctl-{uuid.uuid4().hex[:16]}",
        "LOCAL_SECRETS_PATH": str(tmp_path / "dev-secrets.json"),
        "KEY_VAULT_URL": "",
        "ALLOW_HTTP_LOOPBACK": "true",
        "EXPORT_SCHEDULE": "* * * * * *",
        "LOCAL_INTAKE_KEY": "",
        "LOCAL_ADMIN_KEY": "",
        **settings,
    }
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "scripts.serve", "--port", str(port)], cwd=REPO_ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base_url}/api/destinations", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("make serve did not start:\n" + log.read_text()) from None
                time.sleep(0.1)
        yield base_url, process, log
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def serve(azurite: Azurite, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    with serving(azurite, tmp_path) as served:
        yield served


def test_serve_answers_the_api_and_its_timer_exports_without_a_run_now_call(
    serve: tuple[str, subprocess.Popen[str], Path], azurite: Azurite, blob_service: BlobServiceClient
) -> None:
    base_url, _, log = serve
    container = blob_service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    try:
        with httpx.Client(base_url=base_url, timeout=30) as api:
            body = sas_destination(azurite.account_url, container.container_name,
                                   container_sas(container.container_name))
            assert api.put("/api/destinations/acme", json=body).status_code == 201
            posted = api.post("/api/destinations/acme/batches", params={"type": "events"},
                              content=ndjson(events(50)), headers={"content-type": "application/x-ndjson"})
            assert posted.status_code == 202
            deadline = time.monotonic() + 15
            state = posted.json()["state"]
            while state != "landed" and time.monotonic() < deadline:
                time.sleep(0.2)
                state = api.get(posted.json()["status_url"]).json()["state"]
            assert state == "landed", log.read_text()
        assert sum(1 for b in container.list_blobs() if "/_manifests/" in b.name) == 1
        assert "Timer: EXPORT_SCHEDULE '* * * * * *' (UTC)" in log.read_text()
        # The worker logs "batch landed" just after saving the state a GET may already have shown.
        deadline = time.monotonic() + 10
        while "batch landed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "batch landed" in log.read_text()
        assert "Function keys: none needed locally" in log.read_text()  # no local key set: every route is open
    finally:
        container.delete_container()


def test_serve_refuses_a_bad_schedule_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true", "EXPORT_SCHEDULE": "*/5 * * * *",
           "LOCAL_SECRETS_PATH": str(tmp_path / "s.json")}
    done = subprocess.run([sys.executable, "-m", "scripts.serve", "--port", str(free_port())], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "EXPORT_SCHEDULE" in done.stderr and "has 5 field(s)" in done.stderr


def test_serve_with_local_keys_asks_each_request_for_its_own_functions_key(
    azurite: Azurite, blob_service: BlobServiceClient, tmp_path: Path
) -> None:
    """As in Azure: the intake key posts batches and cannot create a destination; the admin key administers
    and cannot post a batch; no key opens nothing. A key works as the header or as ?code=, and is never logged."""
    intake_key = secret_watch.register(secrets.token_urlsafe(32), "intake function key") or ""
    admin_key = secret_watch.register(secrets.token_urlsafe(32), "admin function key") or ""
    container = blob_service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    as_intake, as_admin = {"x-functions-key": intake_key}, {"x-functions-key": admin_key}
    batch = {"params": {"type": "events"}, "content": ndjson(events(5)),
             "headers": {"content-type": "application/x-ndjson"}}
    body = sas_destination(azurite.account_url, container.container_name, container_sas(container.container_name))
    try:
        with serving(azurite, tmp_path, LOCAL_INTAKE_KEY=intake_key, LOCAL_ADMIN_KEY=admin_key) as (base_url, _, log), \
                httpx.Client(base_url=base_url, timeout=30) as api:
            put = "/api/destinations/acme?verify=false"
            refused = api.put(put, json=body, headers=as_intake)
            assert refused.status_code == 401
            error = refused.json()["error"]
            assert error["code"] == "unauthorized" and "admin function's key" in error["message"]
            assert intake_key not in refused.text
            assert api.put(put, json=body).status_code == 401
            assert api.put(put, json=body, headers=as_admin).status_code == 201
            assert api.put(f"{put}&code={admin_key}", json=body).status_code == 200
            assert api.get("/api/destinations", headers=as_intake).status_code == 401
            assert api.get("/api/openapi.json", headers=as_intake).status_code == 401
            assert api.get("/api/openapi.json", headers=as_admin).status_code == 200

            posts = "/api/destinations/acme/batches"
            wrong = api.post(posts, headers={**batch["headers"], **as_admin}, params=batch["params"],
                             content=batch["content"])
            assert wrong.status_code == 401 and "intake function's key" in wrong.json()["error"]["message"]
            assert api.post(posts, **batch).status_code == 401  # type: ignore[arg-type]
            posted = api.post(posts, headers={**batch["headers"], **as_intake}, params=batch["params"],
                              content=batch["content"])
            assert posted.status_code == 202, posted.text
            assert api.post(posts, headers=batch["headers"], params={**batch["params"], "code": intake_key},
                            content=batch["content"]).status_code == 202
            status_url = posted.json()["status_url"]
            assert api.get(status_url, headers=as_intake).status_code == 401  # batch status is administration
            assert api.get(status_url, headers=as_admin).status_code == 200
        text = log.read_text()
        assert "Function keys, as in Azure: intake needs LOCAL_INTAKE_KEY, admin needs LOCAL_ADMIN_KEY" in text
        assert "code=REDACTED" in text  # uvicorn's access log, with the key taken out
        assert intake_key not in text and admin_key not in text
    finally:
        container.delete_container()


# --- ports: AZURITE_PORT and PORT, and a banner that names control storage without a key ----------------------


def test_serve_reads_development_storage_as_the_azurite_on_azurite_port_and_names_it_without_a_key(
    azurite: Azurite, tmp_path: Path
) -> None:
    """UseDevelopmentStorage=true is port 10000 to the storage SDK; `make serve` reads it as the Azurite on
    AZURITE_PORT, and its banner names that endpoint (and whose Azurite it is), never the account key."""
    with serving(azurite, tmp_path, AzureWebJobsStorage="UseDevelopmentStorage=true",
                 AZURITE_PORT=str(azurite.port)) as (base_url, _, log), httpx.Client(base_url=base_url) as api:
        assert api.get("/api/destinations").status_code == 200  # control storage answered, on AZURITE_PORT
    banner = log.read_text()
    control = re.search(r"^Control storage: (\S+) \((.*)\)$", banner, re.MULTILINE)
    assert control, banner
    assert re.fullmatch(rf"http://127\.0\.0\.1:{azurite.port}/devstoreaccount1/ctl-[0-9a-f]{{16}}", control[1])
    assert azurite.process is not None
    # The listener's pid, where the system tells whose socket it is.
    assert re.fullmatch(rf"AzureWebJobsStorage=UseDevelopmentStorage=true, read as the Azurite on "
                        rf"AZURITE_PORT={azurite.port}: NOT this checkout's Azurite \((pid {azurite.process.pid} "
                        r"\(node\)|a process this checkout did not start) listens there\)", control[2]), control[2]
    assert ACCOUNT_KEY not in banner and "AccountKey" not in banner


def test_serve_banner_names_an_explicit_control_storage_without_its_key(azurite: Azurite, tmp_path: Path) -> None:
    with serving(azurite, tmp_path) as (_, _, log):
        banner = log.read_text()
    assert re.search(rf"^Control storage: http://127\.0\.0\.1:{azurite.port}/devstoreaccount1/ctl-[0-9a-f]{{16}} "
                     r"\(from AzureWebJobsStorage\)$", banner, re.MULTILINE), banner
    assert ACCOUNT_KEY not in banner and "AccountKey" not in banner


def test_serve_refuses_a_connection_string_for_another_local_port_than_azurite_port(
    azurite: Azurite, tmp_path: Path
) -> None:
    """A local.settings.json written for one Azurite and AZURITE_PORT naming another: refused, not crossed."""
    other = free_port()
    env = {**local_env(tmp_path), "AzureWebJobsStorage": azurite.connection_string, "AZURITE_PORT": str(other)}
    done = subprocess.run([sys.executable, "-m", "scripts.serve", "--port", str(free_port())], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert (f"AZURITE_PORT={other}, but control storage is http://127.0.0.1:{azurite.port}/devstoreaccount1/"
            in done.stderr)
    assert f"or run with AZURITE_PORT={azurite.port}" in done.stderr
    assert ACCOUNT_KEY not in done.stderr + done.stdout


def test_make_serve_uses_port_for_the_api_and_this_checkouts_azurite_on_azurite_port(tmp_path: Path) -> None:
    """`AZURITE_PORT=a make serve PORT=b`: the API on b, control storage on this checkout's Azurite on a (started
    by the make target), and the banner says both."""
    azurite_port = free_port_triple()  # Azurite takes the next two ports too (queues, tables)
    api_port = free_port()
    env = local_env(tmp_path, AZURITE_PORT=str(azurite_port), AzureWebJobsStorage="UseDevelopmentStorage=true",
                    EXPORT_SCHEDULE="0 0 0 1 1 *")
    out = tmp_path / "make-serve.log"
    with open(out, "w") as log:
        process = subprocess.Popen(["make", "--no-print-directory", *NO_INSTALL, "serve", f"PORT={api_port}"],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{api_port}/api/destinations", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("make serve did not start:\n" + out.read_text()) from None
                time.sleep(0.2)
        assert answer.status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make and the server it runs (Azurite has its own session)
        process.wait(timeout=30)
        stop_azurite(env)
    text = out.read_text()
    assert f"Started: http://127.0.0.1:{azurite_port}/devstoreaccount1, this checkout's Azurite (pid" in text
    assert (f"Control storage: http://127.0.0.1:{azurite_port}/devstoreaccount1/export-control "
            f"(AzureWebJobsStorage=UseDevelopmentStorage=true, read as the Azurite on AZURITE_PORT={azurite_port}: "
            "this checkout's Azurite (pid") in text
    assert f"API: http://127.0.0.1:{api_port}/api/" in text
    assert ACCOUNT_KEY not in text and "AccountKey" not in text


def test_local_settings_init_writes_the_explicit_azurite_of_azurite_port_for_func_start(tmp_path: Path) -> None:
    """`func start` reads UseDevelopmentStorage=true as port 10000: init writes the chosen port's connection
    string instead, which `make serve` then reads as it is; it never overwrites a file."""
    (tmp_path / "local.settings.json.example").write_text((REPO_ROOT / "local.settings.json.example").read_text())
    assert "10500" in init(tmp_path, {"AZURITE_PORT": "10500"})
    values = read_values(tmp_path / "local.settings.json")
    assert values["AzureWebJobsStorage"].endswith(";BlobEndpoint=http://127.0.0.1:10500/devstoreaccount1;"
                                                  "QueueEndpoint=http://127.0.0.1:10501/devstoreaccount1;")
    assert values == {**read_values(tmp_path / "local.settings.json.example"),
                      "AzureWebJobsStorage": values["AzureWebJobsStorage"]}
    with pytest.raises(FileExistsError, match=r"local\.settings\.json exists already"):
        init(tmp_path, {})
    (tmp_path / "local.settings.json").unlink()
    init(tmp_path, {})
    assert read_values(tmp_path / "local.settings.json")["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
