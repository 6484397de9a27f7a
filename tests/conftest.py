"""Session-wide Azurite, fresh containers per test, and settings pointing at them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.settings import Settings, load_settings
from tests.support.azurite import Azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(data_dir=tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
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
        local_secrets_path=tmp_path / "dev-secrets.json",
        allow_http_loopback=True,
        retry_base_seconds=0,
    )
