"""Health probes through the real server: /api/health makes no network call; /api/health/ready names what is down.

Control storage is an Azurite of this module's own on a free port, stopped and started again by the test; the
secret store is the local development store or the fake Key Vault (real SecretClient over TLS).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shared.api.app import create_api
from shared.api.health_routes import READINESS_SECRET, Readiness
from shared.secrets.cache import CachedSecrets
from shared.services import Services, build_services
from shared.settings import load_settings
from tests.support.azurite import Azurite, connection_string, free_port
from tests.support.http_servers import silent_server
from tests.support.keyvault import FakeKeyVault
from tests.support.server import ApiServer


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, on a free port: the test stops it and starts it again."""
    server = Azurite(data_dir=tmp_path / "azurite")
    server.start()
    yield server
    server.stop()


def services_for(storage: str, tmp_path: Path, secrets: CachedSecrets | None = None) -> Services:
    settings = load_settings(control_storage_connection=storage, control_container=f"ctl-{uuid.uuid4().hex[:12]}",
                             local_secrets_path=tmp_path / "dev-secrets.json", request_timeout_seconds=10)
    return build_services(settings, secrets=secrets)


def get(services: Services, path: str) -> httpx.Response:
    """One request to a freshly started app (so no readiness result is kept from an earlier phase)."""
    with ApiServer(create_api(lambda: services)) as server:
        return httpx.get(f"{server.base_url}{path}", timeout=30)


def test_ready_names_control_storage_while_its_azurite_is_stopped_and_is_ready_when_it_runs(
    own_azurite: Azurite, tmp_path: Path
) -> None:
    services = services_for(own_azurite.connection_string, tmp_path)
    ready = get(services, "/api/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert [(c["check"], c["ok"]) for c in body["checks"]] == [("control_storage", True), ("secret_store", True)]
    assert ready.headers["cache-control"] == "no-store"

    own_azurite.stop()
    down = get(services, "/api/health/ready")
    assert down.status_code == 503, down.text
    error = down.json()["error"]
    assert error["code"] == "not_ready"
    assert error["message"] == "not ready: control storage is down: unreachable or failing"
    assert [(c["check"], c["ok"]) for c in error["details"]] == [("control_storage", False), ("secret_store", True)]
    assert str(own_azurite.port) not in down.text  # no endpoint in an answer anyone may read
    alive = get(services, "/api/health")  # liveness makes no network call: still up
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}

    own_azurite.start()
    again = get(services, "/api/health/ready")
    assert again.status_code == 200, again.text


def test_health_is_up_without_any_dependency_and_ready_is_not(tmp_path: Path) -> None:
    """Control storage on a port nobody listens on: liveness does not care, readiness says so."""
    services = services_for(connection_string(free_port()), tmp_path)
    assert get(services, "/api/health").status_code == 200
    assert get(services, "/api/health/ready").status_code == 503


def test_health_answers_503_naming_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import services as services_module
    from shared import settings as settings_module

    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("GZIP_LEVEL", "11")
    settings_module.get_settings.cache_clear()
    services_module.get_services.cache_clear()
    try:
        with ApiServer(create_api(services_module.get_services)) as server:
            response = httpx.get(f"{server.base_url}/api/health", timeout=30)
    finally:
        settings_module.get_settings.cache_clear()
        services_module.get_services.cache_clear()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "misconfigured" and "GZIP_LEVEL" in response.text


def key_vault_services(azurite: Azurite, vault: FakeKeyVault, tmp_path: Path) -> Services:
    return services_for(azurite.connection_string, tmp_path, secrets=CachedSecrets(vault.secret_store(), 300))


def test_ready_reads_the_readiness_secret_from_key_vault(
    azurite: Azurite, fake_key_vault: FakeKeyVault, tmp_path: Path
) -> None:
    fake_key_vault.put_secret(READINESS_SECRET, "opens-nothing")
    response = get(key_vault_services(azurite, fake_key_vault, tmp_path), "/api/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"][1] == {**response.json()["checks"][1], "check": "secret_store", "ok": True,
                                            "state": "answered"}


@pytest.mark.parametrize(("switch", "state"), [
    ("forbidden", "the app's identity is refused"),
    ("outage_status", "unreachable or failing"),
])
def test_ready_names_the_secret_store_when_the_vault_refuses_the_identity_or_fails(
    azurite: Azurite, fake_key_vault: FakeKeyVault, tmp_path: Path, switch: str, state: str
) -> None:
    setattr(fake_key_vault, switch, True if switch == "forbidden" else 503)
    response = get(key_vault_services(azurite, fake_key_vault, tmp_path), "/api/health/ready")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["message"] == f"not ready: the secret store is down: {state}"
    assert fake_key_vault.url.split("//")[1] not in response.text  # the vault is not named to an anonymous caller


def test_a_flood_of_ready_calls_reads_the_vault_once(
    azurite: Azurite, fake_key_vault: FakeKeyVault, tmp_path: Path
) -> None:
    """Anyone may call the probe: fifty at once make one read of the vault (one check at a time, kept 5 s)."""
    fake_key_vault.put_secret(READINESS_SECRET, "opens-nothing")
    services = key_vault_services(azurite, fake_key_vault, tmp_path)
    with ApiServer(create_api(lambda: services)) as server, ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: httpx.get(f"{server.base_url}/api/health/ready", timeout=30).status_code,
                                 range(50)))
    assert statuses == [200] * 50
    reads = [r for r in fake_key_vault.requests if r.path == f"/secrets/{READINESS_SECRET}/"]
    assert len(reads) <= 2  # the SDK's first, unauthenticated request (the 401 challenge), then the read


def test_a_dependency_that_never_answers_is_down_within_the_timeout(tmp_path: Path) -> None:
    with silent_server() as port:
        services = services_for(connection_string(port), tmp_path)
        readiness = Readiness(timeout=0.5)
        results = asyncio.run(readiness.results(services))
    storage = results[0]
    assert storage.check == "control_storage" and not storage.ok
    assert storage.state in {"no answer within 0.5 s", "unreachable or failing"}
