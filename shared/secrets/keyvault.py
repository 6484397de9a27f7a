"""Destination secrets in Azure Key Vault, through the real `SecretClient`, and Key Vault's failures in plain words.

Nothing here logs a secret value or puts one in an exception message; names and vault URLs are fine.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.secrets.names import check_secret_name
from shared.secrets.store import (
    SecretAccessDeniedError,
    SecretNameInUseError,
    SecretNotFoundError,
    SecretStoreError,
    SecretStoreUnavailableError,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

_ROLE_HINT = "grant it the 'Key Vault Secrets Officer' role (or 'Key Vault Secrets User' for read-only)"


class KeyVaultSecretStore:
    """Secrets in Azure Key Vault through the real `SecretClient`.

    `client_kwargs` go to `SecretClient` unchanged (transport options such as `connection_verify`, `retry_total`,
    `read_timeout`, or `verify_challenge_resource`).
    """

    def __init__(self, vault_url: str, credential: TokenCredential, **client_kwargs: Any) -> None:
        self.vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._client_kwargs = client_kwargs
        self._client: SecretClient | None = None
        self._client_lock = threading.Lock()

    def _secret_client(self) -> SecretClient:
        # Built on first use, not at construction: building settings or the app must not touch the network,
        # and one client (one connection pool, one cached token) is shared by every caller in the process.
        with self._client_lock:
            if self._client is None:
                self._client = SecretClient(self.vault_url, self._credential, **self._client_kwargs)
            return self._client

    def get_secret(self, name: str) -> str:
        check_secret_name(name)
        try:
            secret = self._secret_client().get_secret(name)
        except Exception as exc:
            self._raise_mapped(exc, name, "read")
        if secret.value is None:
            raise SecretStoreError(f"secret '{name}' in Key Vault {self.vault_url} has no value")
        logger.debug("read secret %s from Key Vault %s", name, self.vault_url)
        return secret.value

    def set_secret(self, name: str, value: str) -> None:
        check_secret_name(name)
        try:
            self._secret_client().set_secret(name, value)
        except Exception as exc:
            self._raise_mapped(exc, name, "write")
        logger.info("stored secret %s in Key Vault %s", name, self.vault_url)

    def delete_secret(self, name: str) -> None:
        check_secret_name(name)
        try:
            # Starting the delete is enough: waiting would poll until soft-delete finishes (seconds) and purging
            # needs an extra permission. The soft-deleted secret expires on its own.
            self._secret_client().begin_delete_secret(name)
        except ResourceNotFoundError:
            logger.info("secret %s was already absent from Key Vault %s", name, self.vault_url)
            return
        except Exception as exc:
            self._raise_mapped(exc, name, "delete")
        logger.info("deleted secret %s from Key Vault %s", name, self.vault_url)

    def _raise_mapped(self, exc: Exception, name: str, action: str) -> NoReturn:
        """Turn an azure-core exception into one of ours; anything unrecognised propagates unchanged."""
        mapped = map_key_vault_error(exc, name, action, self.vault_url)
        if mapped is None:
            raise exc
        logger.warning("Key Vault %s: could not %s secret %s: %s", self.vault_url, action, name, mapped)
        raise mapped from exc


def map_key_vault_error(exc: Exception, name: str, action: str, vault_url: str) -> SecretStoreError | None:
    """Our error for an azure-core exception raised by `SecretClient`, or None if it is not a service failure.

    Classified by exception type and HTTP status only. The texts quote no request content, so no value leaks.
    """
    vault = f"Key Vault {vault_url}"
    if isinstance(exc, ResourceNotFoundError):
        return SecretNotFoundError(
            f"secret '{name}' was not found in {vault}: it may have been deleted; update the destination's credentials"
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return SecretStoreUnavailableError(f"{vault} could not be reached: {_first_line(exc)}")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # No HTTP response: the credential itself failed (no managed identity, bad client secret...).
        return SecretAccessDeniedError(
            f"the function app's identity could not get a token for {vault}: {_first_line(exc)}; "
            "check that its managed identity is enabled (or the AZURE_* credential settings are right)"
        )
    if not isinstance(exc, HttpResponseError):
        return None
    status = exc.status_code or 0
    codes = _error_codes(exc)
    if status == 403 and "SecretDisabled" in codes:
        return SecretAccessDeniedError(
            f"secret '{name}' is disabled in {vault}: enable it, or update the destination's credentials"
        )
    if status == 401:
        return SecretAccessDeniedError(
            f"the function app's identity is not allowed to {action} secret '{name}' in {vault} (401 Unauthorized): "
            "the vault rejected its token; check that the identity belongs to the vault's Microsoft Entra tenant"
        )
    if status == 403:
        hint = _ROLE_HINT
        if "ForbiddenByPolicy" in codes:  # vaults on the older access-policy model, not Azure RBAC
            hint = "add an access policy that allows secret get, set and delete for it"
        return SecretAccessDeniedError(
            f"the function app's identity is not allowed to {action} secret '{name}' in {vault} (403 Forbidden): {hint}"
        )
    if status == 409 and "ObjectIsDeletedButRecoverable" in codes:
        return SecretNameInUseError(
            f"secret '{name}' was deleted recently and is still recoverable in {vault}, so the name cannot be "
            "reused yet: recover or purge the deleted secret, then try again"
        )
    if status == 429 or status >= 500:
        return SecretStoreUnavailableError(f"{vault} could not be reached: it answered {status} ({_first_line(exc)})")
    return SecretStoreError(f"{vault} refused to {action} secret '{name}': {status} ({_first_line(exc)})")


def _error_codes(exc: HttpResponseError) -> set[str]:
    """The service's error code and inner error code (Key Vault puts the useful one inside)."""
    codes: set[str] = set()
    error = exc.error
    if error is not None:
        codes.add(str(error.code))
        inner = getattr(error, "innererror", None) or {}
        if isinstance(inner, dict) and inner.get("code"):
            codes.add(str(inner["code"]))
    return codes


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
