"""Session-wide Azurite, fresh containers per test, and settings pointing at them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.api.app import create_api
from shared.services import Services, build_services
from shared.settings import Settings, load_settings
from tests.support.azurite import Azurite
from tests.support.server import ApiServer

pytest_plugins = [
    "tests.support.keyvault", "tests.support.secret_watch", "tests.support.managed_identity",
    "tests.support.hostile_storage", "tests.support.resolver",
]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(data_dir=tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    from tests.support import secret_watch  # the plugin (pytest_plugins): imported by pytest first

    try:
        secret_watch.sweep_storage(server.connection_string)  # every blob the run left, control storage included
    finally:
        server.stop()


@pytest.fixture
def blob_service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def fresh_container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    """A new, empty destination container for one test."""
    container = blob_service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    yield container
    container.delete_container()


@pytest.fixture
def settings(azurite: Azurite, tmp_path: Path) -> Settings:
    """Settings for one test: its own control container and local secret store."""
    return load_settings(
        control_storage_connection=azurite.connection_string,
        control_container=f"ctl-{uuid.uuid4().hex[:16]}",
        export_queue_name=f"q-{uuid.uuid4().hex[:16]}",  # each test's export queue is its own
        local_secrets_path=tmp_path / "dev-secrets.json",
        allow_http_loopback=True,
        retry_base_seconds=0,
        storage_retry_total=1,
        storage_retry_backoff_seconds=0.1,
        request_timeout_seconds=10,
        max_request_bytes=2 * 1024 * 1024,
    )


# --- The app under test: real services against Azurite, the API under a real uvicorn server ---------


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


class _CurrentServices:
    """The session's API server serves whichever test's services are current."""

    value: Services | None = None

    def __call__(self) -> Services:
        assert self.value is not None, "no services for this test"
        return self.value


@pytest.fixture(scope="session")
def _api_server() -> Iterator[tuple[str, _CurrentServices]]:
    from tests.support import secret_watch

    current = _CurrentServices()
    server = ApiServer(secret_watch.watching(create_api(current)))
    server.start()
    yield server.base_url, current
    server.stop()


@pytest.fixture
def api(_api_server: tuple[str, _CurrentServices], services: Services) -> Iterator[httpx.Client]:
    """An HTTP client for the API, served over real HTTP by uvicorn with this test's services."""
    base_url, current = _api_server
    current.value = services
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client
    current.value = None


@pytest.fixture
def app_environment(monkeypatch: pytest.MonkeyPatch, azurite: Azurite, tmp_path: Path) -> Iterator[None]:
    """The deployed code path: app settings in the environment (as the Functions host sets them), and the
    process-wide settings and services read from it on first use, forgotten again after the test."""
    from shared import services as services_module
    from shared import settings as settings_module

    for name, value in {
        "AzureWebJobsStorage": azurite.connection_string, "CONTROL_CONTAINER": f"fn-{uuid.uuid4().hex[:12]}",
        "EXPORT_QUEUE_NAME": f"q-{uuid.uuid4().hex[:16]}",
        "LOCAL_SECRETS_PATH": str(tmp_path / "secrets.json"), "ALLOW_HTTP_LOOPBACK": "true",
        "STORAGE_RETRY_TOTAL": "1", "STORAGE_RETRY_BACKOFF_SECONDS": "0.1",
    }.items():
        monkeypatch.setenv(name, value)
    settings_module.get_settings.cache_clear()
    services_module.get_services.cache_clear()
    yield
    settings_module.get_settings.cache_clear()
    services_module.get_services.cache_clear()
