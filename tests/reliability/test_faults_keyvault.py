"""Key Vault faults: unreachable, answering 503, 403 Forbidden, the secret deleted.

The services read destination secrets through the real SecretClient from the fake Key Vault over TLS
(tests/support/keyvault.py), with no cache (TTL 0) so every attempt asks the vault. Batches stay pending
or fail with a clear reason, and land once the vault is back or the secret is restored.
"""

from __future__ import annotations

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export.runner import run_export_pass
from shared.secrets.cache import CachedSecrets
from shared.secrets.keyvault import KeyVaultSecretStore
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.fault_helpers import assert_landed_exactly_once, report, scaled, secret_name_of, state
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite, free_port
from tests.support.keyvault import FakeKeyVault
from tests.support.sas import container_sas, sas_destination


@pytest.fixture
def services(settings: Settings, key_vault_store: KeyVaultSecretStore) -> Services:
    return build_services(settings, secrets=CachedSecrets(key_vault_store, ttl_seconds=0))


def test_key_vault_unreachable_then_503_then_back(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    fake_key_vault: FakeKeyVault, key_vault_store: KeyVaultSecretStore,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none")
    records = list(sample_data.events(scaled(200), hours=2))
    first = post_batch(api, dest, records)["batch_id"]

    # Nothing listens at the vault's address (DNS or network down, firewall): connection refused.
    dead_vault = f"https://localhost:{free_port()}"
    services.secrets.store = KeyVaultSecretStore(dead_vault, fake_key_vault.credential(),
                                                 **fake_key_vault.client_kwargs())
    assert run_export_pass(services).retried == 1
    error = state(services, first)["last_error"]
    assert error["code"] == "secret_store_unavailable"
    assert error["message"].startswith(f"Key Vault {dead_vault} could not be reached")
    # Intake does not need the vault: batches keep being accepted meanwhile.
    second = post_batch(api, dest, records[:10])["batch_id"]
    # Saving new credentials does need it: a clear 503, and the destination stays as it was.
    before = api.get(f"/api/destinations/{dest}").json()
    body = sas_destination(azurite.account_url, fresh_container.container_name,
                           container_sas(fresh_container.container_name, delete=True))
    refused = api.put(f"/api/destinations/{dest}", json=body)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "secret_store_unavailable"
    assert refused.json()["error"]["message"].startswith(f"Key Vault {dead_vault} could not be reached")
    assert api.get(f"/api/destinations/{dest}").json() == before

    # The vault is reachable again but answers 503 for a while.
    services.secrets.store = key_vault_store
    fake_key_vault.outage_status = 503
    assert run_export_pass(services).retried == 2
    error = state(services, first)["last_error"]
    assert error["code"] == "secret_store_unavailable" and "answered 503" in error["message"]
    assert state(services, second)["state"] == "pending"

    fake_key_vault.outage_status = None
    assert run_export_pass(services).landed == 2
    counts = assert_landed_exactly_once(fresh_container, {first: len(records), second: 10})
    report("key_vault_unreachable_then_503", attempts=state(services, first)["total_attempts"], **counts)


def test_key_vault_forbidden_fails_visibly_then_retry_lands(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    fake_key_vault: FakeKeyVault,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    records = list(sample_data.events(scaled(100), hours=1))
    bid = post_batch(api, dest, records)["batch_id"]
    fake_key_vault.forbidden = True  # the app's identity lost its role on the vault
    impatient = build_services(services.settings.model_copy(update={"max_attempts": 2}), secrets=services.secrets)

    assert run_export_pass(impatient).retried == 1
    pending = api.get(f"/api/batches/{bid}").json()
    assert pending["state"] == "pending"
    assert pending["last_error"]["code"] == "secret_access_denied"
    assert (f"is not allowed to read secret '{secret_name_of(services, dest)}' in Key Vault {fake_key_vault.url} "
            "(403 Forbidden): grant it the 'Key Vault Secrets Officer' role") in pending["last_error"]["message"]
    assert run_export_pass(impatient).failed == 1
    failed = api.get(f"/api/batches/{bid}").json()
    assert failed["state"] == "failed" and failed["last_error"]["message"].startswith("gave up after 2 attempts: ")

    fake_key_vault.forbidden = False  # the role is granted again
    assert api.post(f"/api/batches/{bid}/retry").status_code == 200
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    report("key_vault_403", attempts=state(services, bid)["total_attempts"], reason="secret_access_denied", **counts)


def test_deleted_secret_fails_then_lands_after_credentials_are_restored(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    fake_key_vault: FakeKeyVault, key_vault_store: KeyVaultSecretStore,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    records = list(sample_data.events(scaled(100), hours=1))
    bid = post_batch(api, dest, records)["batch_id"]
    name = secret_name_of(services, dest)
    key_vault_store.delete_secret(name)  # someone deleted it in the portal (soft delete)

    assert run_export_pass(services).failed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed"
    assert status["last_error"]["code"] == "secret_not_found"
    assert status["last_error"]["message"] == (
        f"secret '{name}' was not found in Key Vault {fake_key_vault.url}: it may have been deleted; "
        "update the destination's credentials"
    )

    body = sas_destination(azurite.account_url, fresh_container.container_name,
                           container_sas(fresh_container.container_name, delete=True))
    # Key Vault keeps the deleted secret (soft delete) under its old name; a save writes a new name, so new
    # credentials are taken at once.
    assert api.put(f"/api/destinations/{dest}", json=body).status_code == 200
    assert secret_name_of(services, dest) != name and fake_key_vault.is_deleted(name)
    assert api.get(f"/api/batches/{bid}").json()["state"] == "pending"  # re-queued by the credentials change
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    report("key_vault_secret_deleted", attempts=state(services, bid)["total_attempts"], reason="secret_not_found",
           **counts)
