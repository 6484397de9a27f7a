"""Build destination ContainerClients from a destination record plus its secret (one place).

Every client is built so that a hostile endpoint gains nothing from it: it follows no redirects, and a
token credential is wrapped so that it only ever issues Azure Storage tokens, whatever an authentication
challenge asks for (the storage SDK's challenge handling would otherwise fetch a token for the resource the
server names, Key Vault included, and send it to that server).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.storage.blob import ContainerClient, ExponentialRetry

from shared.control.store import POOL_CONNECTIONS, pooled_transport
from shared.destinations.record import DestinationRecord
from shared.settings import Settings

MAX_CACHED_CLIENTS = 512
STORAGE_SCOPE = "https://storage.azure.com/.default"
# azure-identity options that only the Entra ID (MSAL) credentials take; a managed identity has no authority.
_MSAL_ONLY_OPTIONS = frozenset({"authority", "disable_instance_discovery", "additionally_allowed_tenants"})


class ForeignAudienceRefused(ClientAuthenticationError):
    """A destination asked for a token for a resource other than Azure Storage; none was issued."""


class StorageOnlyCredential:
    """A TokenCredential that issues Azure Storage tokens and nothing else.

    The storage SDK asks for `https://storage.azure.com/.default`; after a 401 whose challenge names another
    `resource_id` (or tenant) it would ask for that. This wrapper refuses every other scope, and always uses
    the inner credential's own tenant, so a destination can never obtain a token for Key Vault or anything
    else the app's identity may reach.
    """

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        if scopes != (STORAGE_SCOPE,):
            # The scope is the remote server's choice: never quote it.
            raise ForeignAudienceRefused(
                "the destination asked for a token for another service; only Azure Storage tokens are issued"
            )
        return self._inner.get_token(STORAGE_SCOPE, claims=claims, enable_cae=enable_cae)

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


class ClientFactory:
    """Turns a destination into a ContainerClient; credentials are created once per process and reused."""

    def __init__(self, settings: Settings, *, credential_options: dict[str, Any] | None = None,
                 transport_options: dict[str, Any] | None = None):
        """`credential_options` go to azure-identity credentials (e.g. a sovereign cloud's authority);
        `transport_options` to the transport every storage client shares (e.g. connection_verify for a private
        CA)."""
        self.settings = settings
        self.credential_options = credential_options or {}
        self.transport_options = transport_options or {}
        self._transport = pooled_transport(POOL_CONNECTIONS, connection_timeout=10,
                                           read_timeout=settings.request_timeout_seconds, **self.transport_options)
        self._credentials: dict[tuple[str, ...], StorageOnlyCredential] = {}
        self._clients: dict[tuple[str, ...], ContainerClient] = {}
        self._lock = threading.Lock()

    def sdk_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            "max_block_size": s.block_bytes,
            "max_single_put_size": 4 * 1024 * 1024,
            # One transport for every destination client of the process (a connection pool per host), with the
            # proxies and CA bundle of the environment read once (shared.control.store.http_options).
            "transport": self._transport,
            # A redirect could carry the request (a token, the customer's records) past the endpoint check.
            "permit_redirects": False,
            # The SDK types these as int but computes with floats; sub-second backoff keeps tests fast.
            "retry_policy": ExponentialRetry(
                initial_backoff=s.storage_retry_backoff_seconds,  # type: ignore[arg-type]
                increment_base=max(2.0, s.storage_retry_backoff_seconds),  # type: ignore[arg-type]
                retry_total=s.storage_retry_total,
                random_jitter_range=1,
            ),
        }

    def candidate_client(self, record: DestinationRecord, secret: str | None) -> ContainerClient:
        """A client for a destination not saved yet (the probe at PUT): not cached."""
        return self._build(record, secret)

    def container_client(self, record: DestinationRecord, secret: str | None) -> ContainerClient:
        """One client per destination version and secret, reused across batches (its connections too)."""
        digest = hashlib.sha256((secret or "").encode()).hexdigest()
        key = (record.id, record.updated_at, digest)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            client = self._build(record, secret)
            with self._lock:
                if len(self._clients) >= MAX_CACHED_CLIENTS:
                    self._clients.clear()
                client = self._clients.setdefault(key, client)
        return client

    def _build(self, record: DestinationRecord, secret: str | None) -> ContainerClient:
        auth = record.auth
        kind = auth.type
        container = record.container
        url = record.account_url or ""
        options = self.sdk_options()
        if kind == "connection_string":
            return ContainerClient.from_connection_string(_require(secret), container, **options)
        if kind == "sas":
            token = _require(secret).strip()
            token = token.split("?", 1)[1] if "?" in token else token
            return ContainerClient(url, container, credential=token, **options)
        if kind == "service_principal":
            credential = self._service_principal(str(auth.tenant_id), str(auth.client_id), _require(secret))
            return ContainerClient(url, container, credential=credential, **options)
        if kind == "managed_identity":
            return ContainerClient(url, container, credential=self._managed_identity(auth.client_id), **options)
        raise ValueError(f"unknown auth type {kind!r}")

    def forget_secret(self, record: DestinationRecord) -> None:
        """Drop cached clients and credentials of a destination (its secret was rotated)."""
        with self._lock:
            for key in [k for k in self._clients if k[0] == record.id]:
                del self._clients[key]
        auth = record.auth
        if auth.type != "service_principal":
            return
        with self._lock:
            for key in [k for k in self._credentials if k[:3] == ("sp", auth.tenant_id, auth.client_id)]:
                del self._credentials[key]

    def _service_principal(self, tenant_id: str, client_id: str, secret: str) -> StorageOnlyCredential:
        # The secret's digest keys the cache so a rotated secret gets a new credential.
        key = ("sp", tenant_id, client_id, hashlib.sha256(secret.encode()).hexdigest())
        with self._lock:
            if key not in self._credentials:
                inner = ClientSecretCredential(tenant_id, client_id, secret, **self.credential_options)
                self._credentials[key] = StorageOnlyCredential(inner)
            return self._credentials[key]

    def _managed_identity(self, client_id: str | None) -> StorageOnlyCredential:
        # ManagedIdentityCredential, not DefaultAzureCredential: no developer or environment credential may
        # stand in for the app's identity, and a user-assigned identity is named by its client id.
        key = ("mi", client_id or "")
        options = {k: v for k, v in self.credential_options.items() if k not in _MSAL_ONLY_OPTIONS}
        with self._lock:
            if key not in self._credentials:
                self._credentials[key] = StorageOnlyCredential(ManagedIdentityCredential(client_id=client_id,
                                                                                         **options))
            return self._credentials[key]


def _require(secret: str | None) -> str:
    if not secret:
        raise ValueError("this destination's credentials need a secret, and none was found")
    return secret
