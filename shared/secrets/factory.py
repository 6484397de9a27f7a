"""The one place a secret store is built from the settings: Key Vault in Azure, the local file in development."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.identity import DefaultAzureCredential

from shared.secrets.keyvault import KeyVaultSecretStore
from shared.secrets.local_store import LocalSecretStore
from shared.secrets.store import SecretStore

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.settings import Settings


def build_secret_store(
    settings: Settings, credential: TokenCredential | None = None, **client_kwargs: Any
) -> SecretStore:
    """Key Vault when KEY_VAULT_URL is set; otherwise the development-only local file (with a loud warning).

    `client_kwargs` reach `SecretClient` (tests pass `connection_verify` and `verify_challenge_resource`).
    """
    if settings.key_vault_url:
        if credential is None:
            credential = DefaultAzureCredential()
        options: dict[str, Any] = {
            # The SDK default (10 retries, backoff up to 2 minutes) could eat a whole export pass during an outage;
            # the batch is retried by the next pass anyway.
            "retry_total": 3,
            "connection_timeout": min(settings.request_timeout_seconds, 20.0),
            "read_timeout": settings.request_timeout_seconds,
        }
        options.update(client_kwargs)
        return KeyVaultSecretStore(settings.key_vault_url, credential, **options)
    return LocalSecretStore(settings.local_secrets_path)
