"""Destination secrets: Azure Key Vault in Azure, a development-only JSON file locally, a TTL cache in front.

Control storage keeps only a secret's *name* (see `new_secret_name`); the value lives here. Nothing in this
module ever logs a secret value or puts one in an exception message; names and vault URLs are fine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.settings import Settings

logger = logging.getLogger(__name__)

# Key Vault's own rule for secret names; the local store enforces it too so development matches Azure.
_SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# Every secret the app writes is named with this prefix; a destination may name no such secret but its own.
APP_SECRET_PREFIX = "export-dest-"

_ROLE_HINT = "grant it the 'Key Vault Secrets Officer' role (or 'Key Vault Secrets User' for read-only)"


class SecretStoreError(Exception):
    """A secret could not be read, written or deleted. The message is plain words and never holds a value."""

    retryable = False


class SecretNotFoundError(SecretStoreError):
    """The secret does not exist (deleted, or never written)."""


class SecretAccessDeniedError(SecretStoreError):
    """The app's identity may not use the secret, or could not authenticate at all. An operator must act."""


class SecretStoreUnavailableError(SecretStoreError):
    """The store could not be reached or failed on its side; waiting and retrying may fix it."""

    retryable = True


class SecretNameInUseError(SecretStoreError):
    """The name belongs to a recently deleted, still recoverable secret: recover or purge it first."""


class SecretStore(Protocol):
    def get_secret(self, name: str) -> str: ...

    def set_secret(self, name: str, value: str) -> None: ...

    def delete_secret(self, name: str) -> None:
        """Delete the secret; a secret that is already gone is not an error."""
        ...


def new_secret_name(destination_id: str) -> str:
    """A fresh Key Vault secret name for one save of a destination's credentials: `export-dest-{id}-{random}`.

    A name per save ties a destination record to the exact secret it was saved with: two concurrent saves
    never write the same secret, and a deleted destination can be re-created at once, while Key Vault still
    keeps the old, soft-deleted secret under its old name.
    """
    name = f"{APP_SECRET_PREFIX}{destination_id}-{token_hex(6)}"
    if not destination_id or not _SECRET_NAME.match(name):
        limit = 127 - len(APP_SECRET_PREFIX) - 13
        raise ValueError(
            f"destination id {destination_id!r} cannot name a Key Vault secret: use 1 to {limit} letters, "
            "digits and hyphens"
        )
    return name


def is_app_secret_name(name: str) -> bool:
    """Whether the app writes secrets under this name (Key Vault names are case-insensitive)."""
    return name.lower().startswith(APP_SECRET_PREFIX)


def is_own_secret_name(name: str, destination_id: str) -> bool:
    """Whether the app wrote `name` for this destination: `export-dest-{id}-{random}`, or the older
    `export-dest-{id}`. Only such a secret is deleted with its destination or replaced by a new save."""
    own = f"{APP_SECRET_PREFIX}{destination_id}"
    return name.lower() == own or re.fullmatch(rf"{re.escape(own)}-[0-9a-f]{{12}}", name.lower()) is not None


def check_secret_name(name: str) -> str:
    """Refuse names Key Vault would refuse, before any request (and in the local store too)."""
    if not _SECRET_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid Key Vault secret name: use 1 to 127 letters, digits and hyphens")
    return name


# --- Azure Key Vault -------------------------------------------------------------------------------------------


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


# --- Local development store -----------------------------------------------------------------------------------

_LOCAL_FILE_NOTE = "DEVELOPMENT ONLY: unencrypted secrets. In Azure, set KEY_VAULT_URL to use Key Vault."


class LocalSecretStore:
    """DEVELOPMENT ONLY: secrets in an unencrypted JSON file readable only by its owner (0600).

    Thread-safe through a lock. Across processes, each write replaces the whole file atomically, so a reader
    never sees a torn file; two processes writing at the same moment can lose one update, acceptable locally.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ensure_file()
        logger.warning(
            "USING THE LOCAL SECRET STORE %s: development-only and unencrypted; never use it in Azure. "
            "Set KEY_VAULT_URL to store destination secrets in Azure Key Vault.",
            self.path,
        )

    def get_secret(self, name: str) -> str:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
        if name not in secrets:
            raise SecretNotFoundError(
                f"secret '{name}' was not found in the local development secret store {self.path}: "
                "it may have been deleted; update the destination's credentials"
            )
        return secrets[name]

    def set_secret(self, name: str, value: str) -> None:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
            secrets[name] = value
            self._write(secrets)
        logger.info("stored secret %s in the local development secret store", name)

    def delete_secret(self, name: str) -> None:
        check_secret_name(name)
        with self._lock:
            secrets = self._read()
            if secrets.pop(name, None) is None:
                return
            self._write(secrets)
        logger.info("deleted secret %s from the local development secret store", name)

    def _ensure_file(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # O_EXCL: never truncate a file another process created a moment ago.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if self.path.stat().st_mode & 0o077:
                logger.warning("local secret store %s was readable by others; restricting it to its owner", self.path)
                os.chmod(self.path, 0o600)
            return
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"note": _LOCAL_FILE_NOTE, "secrets": {}}, handle)

    def _read(self) -> dict[str, str]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            # `from None`: the decode error carries the whole document, secrets included.
            raise SecretStoreError(
                f"the local secret store {self.path} is not valid JSON (line {exc.lineno}): fix or delete the file"
            ) from None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if not isinstance(secrets, dict):
            raise SecretStoreError(f"the local secret store {self.path} has no 'secrets' object: fix or delete it")
        return {str(key): str(value) for key, value in secrets.items()}

    def _write(self, secrets: dict[str, str]) -> None:
        # mkstemp creates the file 0600; os.replace makes the new content appear all at once.
        fd, temp_name = tempfile.mkstemp(prefix=".secrets-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"note": _LOCAL_FILE_NOTE, "secrets": secrets}, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


# --- Cache -----------------------------------------------------------------------------------------------------


class CachedSecrets:
    """An in-memory TTL cache in front of a SecretStore: at most one store read per name per TTL.

    Thread-safe. Concurrent misses for one name share a single store read. Failures are not cached.
    """

    def __init__(self, store: SecretStore, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}
        # Bumped by set/delete/invalidate so a read that was in flight meanwhile does not cache a stale value.
        self._generations: dict[str, int] = {}
        self._name_locks: dict[str, threading.Lock] = {}
        self._store_reads = 0

    @property
    def store_reads(self) -> int:
        """How many reads went to the store (the benchmark counts Key Vault reads per pass)."""
        return self._store_reads

    def get(self, name: str) -> str:
        with self._lock:
            cached = self._fresh(name)
            if cached is not None:
                return cached
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                cached = self._fresh(name)
                if cached is not None:
                    return cached
                generation = self._generations.get(name, 0)
                self._store_reads += 1
            value = self.store.get_secret(name)
            with self._lock:
                if self._generations.get(name, 0) == generation:
                    self._entries[name] = (value, self._clock() + self._ttl)
            return value

    def set(self, name: str, value: str) -> None:
        try:
            self.store.set_secret(name, value)
        except BaseException:
            self.invalidate(name)  # the store may or may not hold the new value now
            raise
        with self._lock:
            self._bump(name)
            self._entries[name] = (value, self._clock() + self._ttl)

    def delete(self, name: str) -> None:
        try:
            self.store.delete_secret(name)
        finally:
            self.invalidate(name)

    def invalidate(self, name: str) -> None:
        """Forget a cached value, e.g. after a destination answered 401/403, so a rotated secret is read again."""
        with self._lock:
            self._bump(name)
            self._entries.pop(name, None)

    def _fresh(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def _bump(self, name: str) -> None:
        self._generations[name] = self._generations.get(name, 0) + 1


# --- Factory ---------------------------------------------------------------------------------------------------


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
