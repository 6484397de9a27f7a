"""A service-principal destination end to end: a real ClientSecretCredential gets a token from a local Entra ID
(the fake in tests/support/keyvault.py) and the real storage SDK sends it as a bearer token to Azurite over
HTTPS in OAuth mode. This is the Mixpanel way of granting access."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from azure.storage.blob import BlobServiceClient

from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from shared.settings import Settings
from tests.shared.export_helpers import jsonl_records, post_batch
from tests.support.azurite import Azurite
from tests.support.keyvault import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeKeyVault, KeyVaultTLS


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    folder = tmp_path_factory.mktemp("azurite-oauth")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server = Azurite(data_dir=folder / "data", cert_path=folder / "cert.pem", key_path=folder / "key.pem",
                     oauth=True)
    server.start()
    yield server, folder / "ca.pem"
    server.stop()


@pytest.fixture
def sp_services(settings: Settings, fake_key_vault: FakeKeyVault, key_vault_tls: KeyVaultTLS,
                oauth_azurite: tuple[Azurite, Path], tmp_path: Path) -> Services:
    _, storage_ca = oauth_azurite
    bundle = tmp_path / "cas.pem"  # trust both local CAs: the fake Entra ID's and Azurite's
    bundle.write_text(key_vault_tls.ca_path.read_text() + storage_ca.read_text())
    return build_services(settings, client_options={
        "credential_options": {"authority": fake_key_vault.authority, "disable_instance_discovery": True,
                               "connection_verify": str(bundle)},
        "transport_options": {"connection_verify": str(bundle)},
    })


@pytest.fixture
def sp_container(oauth_azurite: tuple[Azurite, Path]) -> Iterator[str]:
    server, ca = oauth_azurite
    service = BlobServiceClient.from_connection_string(server.connection_string, connection_verify=str(ca))
    name = f"sp-{uuid.uuid4().hex[:12]}"
    service.create_container(name)
    yield name
    service.delete_container(name)


def sp_body(server: Azurite, container: str, secret: str = CLIENT_SECRET) -> dict[str, object]:
    return {"endpoint": server.account_url, "container": container, "format": "jsonl", "compression": "none",
            "auth": {"type": "service_principal", "tenant_id": TENANT_ID, "client_id": CLIENT_ID,
                     "client_secret": secret}}


def test_service_principal_destination_exports(
    _api_server: tuple[str, object], sp_services: Services, oauth_azurite: tuple[Azurite, Path], sp_container: str,
    fake_key_vault: FakeKeyVault,
) -> None:
    server, ca = oauth_azurite
    base_url, current = _api_server
    current.value = sp_services  # type: ignore[attr-defined]
    with httpx.Client(base_url=base_url, timeout=60) as api:
        assert api.put("/api/destinations/mixpanel-sp", json=sp_body(server, sp_container)).status_code == 201
        tested = api.post("/api/destinations/mixpanel-sp/test")
        assert tested.status_code == 200, tested.text
        assert fake_key_vault.token_requests, "the credential fetched a token from Entra ID"
        assert fake_key_vault.token_requests[0]["scope"].startswith("https://storage.azure.com")

        records = [{"event": "Signed up", "properties": {"time": 1763629200 + i, "distinct_id": f"u{i}"}}
                   for i in range(25)]
        post_batch(api, "mixpanel-sp", records)
        assert run_export_pass(sp_services).landed == 1
    keyed = BlobServiceClient.from_connection_string(server.connection_string, connection_verify=str(ca))
    assert jsonl_records(keyed.get_container_client(sp_container)) == records
    current.value = None  # type: ignore[attr-defined]


def test_wrong_client_secret_says_authentication_failed(
    _api_server: tuple[str, object], sp_services: Services, oauth_azurite: tuple[Azurite, Path], sp_container: str,
) -> None:
    server, _ = oauth_azurite
    base_url, current = _api_server
    current.value = sp_services  # type: ignore[attr-defined]
    with httpx.Client(base_url=base_url, timeout=60) as api:
        body = sp_body(server, sp_container, secret="not-the-secret")
        at_save = api.put("/api/destinations/wrong-sp", json=body)  # the probe at save fails the same way
        assert at_save.status_code == 400 and at_save.json()["error"]["code"] == "authentication_failed"
        assert api.put("/api/destinations/wrong-sp", params={"verify": "false"}, json=body).status_code == 201
        response = api.post("/api/destinations/wrong-sp/test")
    current.value = None  # type: ignore[attr-defined]
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert f"service principal {CLIENT_ID}" in error["message"]
    assert "not-the-secret" not in response.text
