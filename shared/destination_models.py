"""What a customer sends to configure a destination, validated field by field (pure)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

DESTINATION_ID = re.compile(r"^[a-z0-9-]{3,63}$")
ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PREFIX = 512


def check_destination_id(value: str) -> str:
    if not DESTINATION_ID.match(value):
        raise ValueError(
            "destination id must be 3-63 characters of lowercase letters, digits and '-'"
        )
    return value


def _check_secret_name(value: str | None) -> str | None:
    if value is not None and not SECRET_NAME.match(value):
        raise ValueError("secret_name must be 1-127 letters, digits or '-' (Key Vault secret naming)")
    return value


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SasAuth(_Auth):
    type: Literal["sas"]
    sas_token: SecretStr | None = None
    secret_name: str | None = None

    _name = field_validator("secret_name")(_check_secret_name)

    @model_validator(mode="after")
    def _one_source(self) -> SasAuth:
        if (self.sas_token is None) == (self.secret_name is None):
            raise ValueError("give exactly one of sas_token or secret_name")
        return self


class ServicePrincipalAuth(_Auth):
    type: Literal["service_principal"]
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    secret_name: str | None = None

    _name = field_validator("secret_name")(_check_secret_name)

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not GUID.match(value):
            raise ValueError("must be a GUID like 00000000-0000-0000-0000-000000000000")
        return value.lower()

    @model_validator(mode="after")
    def _one_source(self) -> ServicePrincipalAuth:
        if (self.client_secret is None) == (self.secret_name is None):
            raise ValueError("give exactly one of client_secret or secret_name")
        return self


class ManagedIdentityAuth(_Auth):
    type: Literal["managed_identity"]
    client_id: str | None = None

    @field_validator("client_id")
    @classmethod
    def _guid(cls, value: str | None) -> str | None:
        if value is not None and not GUID.match(value):
            raise ValueError("must be the GUID client id of a user-assigned managed identity")
        return value


class ConnectionStringAuth(_Auth):
    type: Literal["connection_string"]
    connection_string: SecretStr | None = None
    secret_name: str | None = None

    _name = field_validator("secret_name")(_check_secret_name)

    @model_validator(mode="after")
    def _one_source(self) -> ConnectionStringAuth:
        if (self.connection_string is None) == (self.secret_name is None):
            raise ValueError("give exactly one of connection_string or secret_name")
        return self


Auth = Annotated[
    SasAuth | ServicePrincipalAuth | ManagedIdentityAuth | ConnectionStringAuth, Field(discriminator="type")
]


def check_endpoint(url: str, *, allow_http_loopback: bool) -> str:
    """An https blob endpoint on a public host; http and loopback only when development allows it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in {"https", "http"} or not host:
        raise ValueError("must be an https:// URL such as https://myaccount.blob.core.windows.net")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not contain a query, fragment or user info (put a SAS token in auth.sas_token)")
    loopback = host == "localhost" or _is_ip(host, "is_loopback")
    if loopback and not allow_http_loopback:
        raise ValueError("loopback endpoints are refused (set ALLOW_HTTP_LOOPBACK=true for local development)")
    if parts.scheme == "http" and not loopback:
        raise ValueError("must use https (plain http is only allowed for a loopback emulator in development)")
    if not loopback and _is_private(host):
        raise ValueError("must not point at a private, link-local or reserved address")
    return url.rstrip("/")


def _is_ip(host: str, attribute: str) -> bool:
    try:
        return bool(getattr(ipaddress.ip_address(host), attribute))
    except ValueError:
        return False


def _is_private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith((".local", ".internal", ".localhost"))
    return (
        address.is_private or address.is_link_local or address.is_reserved
        or address.is_multicast or address.is_unspecified or address.is_loopback
    )


def check_prefix(value: str) -> str:
    """A blob-name prefix: no '..' segments (also percent-encoded), no leading '/', no control chars."""
    if len(value) > MAX_PREFIX:
        raise ValueError(f"must be at most {MAX_PREFIX} characters")
    decoded = unquote(value)
    for text in (value, decoded):
        if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in text):
            raise ValueError("must not contain control characters")
        if text.startswith("/"):
            raise ValueError("must not start with '/'")
        if "\\" in text:
            raise ValueError("must not contain '\\'")
        if any(segment in {"..", "."} for segment in text.split("/")):
            raise ValueError("must not contain '.' or '..' path segments")
        if "//" in text:
            raise ValueError("must not contain empty path segments ('//')")
    if value and not value.endswith("/"):
        value += "/"
    return value


class DestinationIn(BaseModel):
    """The body of PUT /api/destinations/{id}. Validation context: {"allow_http_loopback": bool}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_name: str | None = None
    endpoint: str | None = None
    container: str
    prefix: str = ""
    format: Literal["jsonl", "csv"] = "jsonl"
    compression: Literal["gzip", "none"] = "gzip"
    auth: Auth

    @field_validator("account_name")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT_NAME.match(value):
            raise ValueError("storage account names are 3-24 lowercase letters and digits")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        allow = bool((info.context or {}).get("allow_http_loopback", False))
        return check_endpoint(value, allow_http_loopback=allow)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        if not CONTAINER_NAME.match(value):
            raise ValueError(
                "container names are 3-63 lowercase letters, digits and single '-' between them"
            )
        return value

    _prefix = field_validator("prefix")(check_prefix)

    @model_validator(mode="after")
    def _one_location(self) -> DestinationIn:
        given = (self.account_name is not None) + (self.endpoint is not None)
        if given == 2:
            raise ValueError("give account_name or endpoint, not both")
        if given == 0 and self.auth.type != "connection_string":
            raise ValueError("give account_name or endpoint (a custom https domain)")
        return self

    def account_url(self) -> str | None:
        if self.endpoint:
            return self.endpoint
        if self.account_name:
            return f"https://{self.account_name}.blob.core.windows.net"
        return None


def validation_details(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as {field, message}; never echo the input (it may hold a secret)."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in {"body"}]
        # Discriminated unions add the tag to the location: auth.sas.sas_token -> auth.sas_token
        if len(loc) >= 2 and loc[0] == "auth" and loc[1] in {
            "sas", "service_principal", "managed_identity", "connection_string"
        }:
            loc = [loc[0], *loc[2:]]
        message = str(err.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        details.append({"field": ".".join(loc) or "body", "message": message})
    return details
