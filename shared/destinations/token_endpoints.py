"""Where the app may send an Entra ID token: Azure Storage blob endpoints only (pure).

A destination authenticated by a token (the app's managed identity, or a customer's service principal)
makes the app present a bearer token to the destination's endpoint. Any other host could replay it, so
token auth is accepted only for hosts that are Azure Storage blob endpoints by their DNS name:

- `https://<account>.blob.core.windows.net` and the sovereign clouds' `.blob.core.chinacloudapi.cn`,
  `.blob.core.usgovcloudapi.net`;
- the DNS-zone form `https://<account>.zNN.blob.storage.azure.net`;
- suffixes an operator adds (TOKEN_AUTH_ENDPOINT_SUFFIXES), e.g. for an air-gapped cloud;
- in development (ALLOW_HTTP_LOOPBACK=true) an https loopback emulator such as Azurite,
  `https://127.0.0.1:10000/devstoreaccount1`.

No port, path, query or user info: the endpoint is the account's, the container is given separately.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.destinations.models import host_address

AZURE_BLOB_SUFFIXES = (".blob.core.windows.net", ".blob.core.chinacloudapi.cn", ".blob.core.usgovcloudapi.net")
_ACCOUNT = r"[a-z0-9]{3,24}"
_DNS_ZONE = re.compile(rf"^(?P<account>{_ACCOUNT})\.z[0-9]{{2}}\.blob\.storage\.azure\.net$")
_LOOPBACK_PATH = re.compile(rf"^/(?P<account>{_ACCOUNT})/?$")
TOKEN_AUTH_TYPES = frozenset({"managed_identity", "service_principal"})


class TokenEndpointRefused(ValueError):
    """The endpoint may not receive the app's tokens; the message says why and what to give instead."""


def token_endpoint_account(url: str, *, extra_suffixes: tuple[str, ...] = (), allow_loopback: bool = False) -> str:
    """The storage account of an endpoint that may receive tokens; raise TokenEndpointRefused otherwise.

    `url` has already passed `check_endpoint` (a well-formed, public or development-loopback URL).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    address = host_address(host)
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if parts.scheme != "https":
        raise TokenEndpointRefused(
            "token-based auth (managed_identity, service_principal) needs an https endpoint: "
            "the token would otherwise travel in clear text"
        )
    if loopback and allow_loopback:
        match = _LOOPBACK_PATH.match(parts.path or "/")
        if match is None:
            raise TokenEndpointRefused("a development loopback endpoint must end in the account name, "
                                       "such as https://127.0.0.1:10000/devstoreaccount1")
        return match["account"]
    if parts.port is not None or parts.path.strip("/"):
        raise TokenEndpointRefused(
            "token-based auth needs the storage account's own blob endpoint, without a port or path, such as "
            "https://myaccount.blob.core.windows.net (give the container in 'container')"
        )
    account = _account_of_host(host, extra_suffixes)
    if account is None:
        raise TokenEndpointRefused(
            "token-based auth (managed_identity, service_principal) is only sent to Azure Storage blob endpoints "
            "(https://<account>.blob.core.windows.net, https://<account>.zNN.blob.storage.azure.net or a sovereign "
            "cloud's); use account_name, or a SAS token or connection string for another endpoint"
        )
    return account


def _account_of_host(host: str, extra_suffixes: tuple[str, ...]) -> str | None:
    zone = _DNS_ZONE.match(host)
    if zone is not None:
        return zone["account"]
    for suffix in (*AZURE_BLOB_SUFFIXES, *extra_suffixes):
        if host.endswith(suffix):
            account = host[: -len(suffix)]
            return account if re.fullmatch(_ACCOUNT, account) else None
    return None


def check_managed_identity_account(account: str, allowed: tuple[str, ...]) -> None:
    """The app's own identity may only be pointed at accounts the operator listed (MANAGED_IDENTITY_ACCOUNTS)."""
    if not allowed:
        raise TokenEndpointRefused(
            "managed identity is not enabled for destinations on this app: the operator lists the storage "
            "accounts it may reach in MANAGED_IDENTITY_ACCOUNTS; use a SAS token or a service principal instead"
        )
    if account not in allowed:
        raise TokenEndpointRefused(
            f"the app's managed identity may not be used for storage account '{account}': it is not in the "
            "operator's MANAGED_IDENTITY_ACCOUNTS list; use a SAS token or a service principal instead"
        )
