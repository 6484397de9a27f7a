"""Generate real container SAS tokens for Azurite with the SDK (what a customer does in the portal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from tests.support import secret_watch
from tests.support.azurite import ACCOUNT_KEY, ACCOUNT_NAME


def container_sas(
    container: str,
    *,
    read: bool = True,
    write: bool = True,
    delete: bool = False,
    list_: bool = False,
    expiry: datetime | None = None,
    start: datetime | None = None,
) -> str:
    token = generate_container_sas(
        ACCOUNT_NAME,
        container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=read, write=write, delete=delete, list=list_),
        expiry=expiry or datetime.now(UTC) + timedelta(hours=24),
        start=start,
        protocol="https,http",
    )
    return secret_watch.register(token, "container SAS token") or token


def sas_destination(account_url: str, container: str, token: str, **extra: object) -> dict[str, object]:
    return {"endpoint": account_url, "container": container, "auth": {"type": "sas", "sas_token": token}, **extra}
