"""Storage connection strings: read the non-secret parts (account, blob endpoint) without keeping keys."""

from __future__ import annotations

from azure.storage.blob import ContainerClient

from shared.destinations.models import check_endpoint

DEVELOPMENT_STORAGE = "usedevelopmentstorage=true"
AZURITE_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


def parse_connection_string(text: str) -> dict[str, str]:
    """Key=value pairs, keys case-insensitive; values may contain '=' (base64 keys)."""
    pairs: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError("the connection string is not a list of Key=Value pairs separated by ';'")
        pairs[key.strip().lower()] = value.strip()
    return pairs


def blob_endpoint_of(text: str, *, allow_http_loopback: bool) -> tuple[str, str | None]:
    """The blob endpoint and account name a connection string points at, checked like custom endpoints."""
    if text.strip().lower().rstrip(";") == DEVELOPMENT_STORAGE:
        if not allow_http_loopback:
            raise ValueError("UseDevelopmentStorage=true is only allowed with ALLOW_HTTP_LOOPBACK=true")
        return AZURITE_BLOB_ENDPOINT, "devstoreaccount1"
    pairs = parse_connection_string(text)
    account = pairs.get("accountname")
    if not (pairs.get("accountkey") or pairs.get("sharedaccesssignature")):
        raise ValueError("the connection string has neither AccountKey nor SharedAccessSignature")
    if "blobendpoint" in pairs:
        endpoint = pairs["blobendpoint"]
    elif account:
        protocol = pairs.get("defaultendpointsprotocol", "https")
        suffix = pairs.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    else:
        raise ValueError("the connection string has neither AccountName nor BlobEndpoint")
    check_endpoint(endpoint, allow_http_loopback=allow_http_loopback)
    # The export builds its client with the SDK's own parser, which reads some strings differently
    # (keys upper-cased but not stripped, UseDevelopmentStorage=true anywhere wins): check its endpoint too.
    return check_endpoint(sdk_blob_endpoint(text), allow_http_loopback=allow_http_loopback), account


def sdk_blob_endpoint(text: str) -> str:
    """The blob endpoint the storage SDK will contact for this connection string (no I/O).

    Only the scheme, host and path: the client's full URL may carry a SAS token.
    """
    try:
        client = ContainerClient.from_connection_string(text, "probe")
    except ValueError:
        raise ValueError("the storage SDK cannot read this connection string (malformed)") from None
    return f"{client.scheme}://{client.primary_hostname}"
