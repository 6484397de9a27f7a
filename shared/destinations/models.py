"""What a customer sends to configure a destination, validated field by field (pure)."""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from shared.destinations.record import OUTPUT_DEFAULTS, CoalesceSettings
from shared.formats.layouts import check_template
from shared.formats.record_filters import MAX_PATTERN, MAX_PATTERNS
from shared.secrets.names import SECRET_NAME

DESTINATION_ID = re.compile(r"^[a-z0-9-]{3,63}$")
ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
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
    """An https blob endpoint on a public host; http and loopback only when development allows it.

    Checked without any DNS lookup, on the address the HTTP stack would actually use: a trailing dot
    ("localhost."), legacy IPv4 forms resolvers still accept (2130706433, 0x7f000001, 0177.0.0.1,
    127.1) and IPv4 addresses inside IPv6 ones (::ffff:10.0.0.1, 64:ff9b::a9fe:a9fe) are seen
    through. A public-looking name whose DNS answer is private cannot be caught here. The endpoint is the
    account's: a container's URL pasted here is refused with the parts it should have been given as.
    """
    parts, loopback = _checked_host(url, allow_http_loopback=allow_http_loopback,
                                    example="https://myaccount.blob.core.windows.net")
    _refuse_container_url(parts, loopback)
    if parts.query:
        raise ValueError("must not contain a query: the text after '?' looks like a SAS token, which goes in "
                         "auth.sas_token")
    return url.rstrip("/")


def check_webhook_url(url: str, *, allow_http_loopback: bool) -> str:
    """An alert webhook's URL (issue 17: ALERT_WEBHOOK_URL, a destination's alerts.webhook_url), under the rules of
    destination endpoints (`check_endpoint`'s host checks: https, a public host, no private, link-local, reserved
    or loopback address unless development allows http loopback), with a path and a query, as Slack's and
    Teams' webhook URLs have. The messages never quote the URL: it is a credential."""
    _checked_host(url, allow_http_loopback=allow_http_loopback, example="https://hooks.slack.com/services/...")
    return url


def _checked_host(url: str, *, allow_http_loopback: bool, example: str) -> tuple[SplitResult, bool]:
    """The URL's parts, and whether its host is loopback, once its scheme and host pass the endpoint rules."""
    if len(url) > MAX_ENDPOINT or not url.isascii() or any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ValueError(
            f"must be a plain ASCII URL of at most {MAX_ENDPOINT} characters without spaces or control characters "
            "(write an international domain name in its xn-- form)"
        )
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in {"https", "http"} or not host:
        raise ValueError(f"must be an https:// URL such as {example}")
    if parts.fragment or parts.username or parts.password:
        raise ValueError("must not contain a fragment ('#...') or user info ('name@')")
    try:
        parts.port  # noqa: B018  # urlsplit checks the port only when asked
    except ValueError:
        raise ValueError("must have a port number from 0 to 65535, if any") from None
    address = host_address(host)
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if loopback and not allow_http_loopback:
        raise ValueError("loopback endpoints are refused (set ALLOW_HTTP_LOOPBACK=true for local development)")
    if parts.scheme == "http" and not loopback:
        raise ValueError("must use https (plain http is only allowed for a loopback emulator in development)")
    if not loopback:
        _check_public_host(host, address)
    return parts, loopback


def is_public_address(address: IPAddress) -> bool:
    """Whether an address a host name resolved to may be reached (the delivery of an alert checks its DNS
    answer with it: a public-looking name can resolve to a private address)."""
    return _is_public(address)


def _check_public_host(host: str, address: IPAddress | None) -> None:
    if address is not None:
        if not _is_public(address):
            raise ValueError("must not point at a private, link-local or reserved address")
    elif not HOST_NAME.match(host):
        raise ValueError(
            "must name a fully qualified host (letters, digits, '-' and '.', such as myaccount.blob.core.windows.net)"
        )
    elif host.endswith(PRIVATE_SUFFIXES):
        raise ValueError("must not point at a private, link-local or reserved address")


def _refuse_container_url(parts: SplitResult, loopback: bool) -> None:
    """Refuse a path beyond the account's: the portal's container URL (``https://acct.blob.core.windows.net/
    mycontainer``, perhaps with ``?sv=...``) pasted as the endpoint would make every blob land under the wrong
    name, or nowhere. A loopback emulator's endpoint holds the account name as its one path segment
    (``http://127.0.0.1:10000/devstoreaccount1``); a public one has no path. The message quotes the host and a
    path segment only when it is a valid container name: never the query, which may hold a SAS signature."""
    segments = [segment for segment in parts.path.split("/") if segment]
    own = 1 if loopback else 0  # the segments that belong to the account's endpoint
    if len(segments) <= own:
        return
    account = segments[0] if own and ACCOUNT_NAME.match(segments[0]) else "devstoreaccount1"
    endpoint = f"{parts.scheme}://{parts.netloc}" + (f"/{account}" if own else "")
    container = segments[own]
    where = "the path's first segment after the account" if own else "the path's first segment"
    likely = (f"'{container}', {where}, is likely the container" if CONTAINER_NAME.match(container)
              else f"{where} would be the container")
    rest = "; a folder after the container goes in 'prefix'" if len(segments) > own + 1 else ""
    sas = "; the SAS token (the text after '?') goes in auth.sas_token" if parts.query else ""
    raise ValueError(
        f"must be the storage account's endpoint, not a container's URL: give the account endpoint ({endpoint}) "
        f"and the container separately, the container in 'container'; {likely}{rest}{sas}"
    )


MAX_ENDPOINT = 2048
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+{_LABEL}$")  # two labels at least: a FQDN
PRIVATE_SUFFIXES = (".local", ".internal", ".localhost", ".localdomain", ".home.arpa", ".lan", ".intranet", ".corp")
_LEGACY_IPV4 = re.compile(r"^[0-9a-fA-FxX.]+$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_address(host: str) -> IPAddress | None:
    """The IP address ``host`` denotes without DNS, or None for a host name.

    Besides the standard literals, the legacy IPv4 forms that ``inet_aton`` (and so ``getaddrinfo``)
    still accepts: a single number, hex or octal parts, fewer than four parts.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # parsing only: no lookup
        except OSError:
            return None
    return None


def _is_public(address: IPAddress) -> bool:
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if int(address) < 2**32 or address in _NAT64:  # IPv4-compatible (::a.b.c.d) and NAT64 addresses
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(inner is None or _is_public(inner) for inner in embedded)
    return True


_CREDENTIAL_MARKS = re.compile(r"(?i)(?:^|[?&;])(?:sig|accountkey|sharedaccesssignature)=")


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
        if _CREDENTIAL_MARKS.search(text):  # a token pasted into the wrong field would end up in blob names
            raise ValueError(
                "looks like a credential (a SAS signature or account key): put it in auth, never in the prefix"
            )
    if value and not value.endswith("/"):
        value += "/"
    return value


class AlertsIn(BaseModel):
    """A destination's own alert webhook (issue 17), besides ALERT_WEBHOOK_URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: SecretStr | None = None  # stored in the secret store: a webhook URL is its own credential
    webhook_secret_name: str | None = None  # keeps the current one (the name GET shows)

    _name = field_validator("webhook_secret_name")(_check_secret_name)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            check_webhook_url(value.get_secret_value(),
                              allow_http_loopback=bool((info.context or {}).get("allow_http_loopback", False)))
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AlertsIn:
        if (self.webhook_url is None) == (self.webhook_secret_name is None):
            raise ValueError("give exactly one of webhook_url or webhook_secret_name")
        return self


class DestinationIn(BaseModel):
    """The body of PUT /api/destinations/{id}."""

    # Validate with context={"allow_http_loopback": bool} (ALLOW_HTTP_LOOPBACK): whether an http or loopback
    # endpoint (a local emulator such as Azurite) is allowed. Not in the docstring: that is public (OpenAPI).

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_name: str | None = None
    endpoint: str | None = None
    container: str
    prefix: str = ""
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    compression: Literal["gzip", "zstd", "snappy", "none"] = "gzip"  # absent with parquet: zstd (_defaults)
    auth: Auth
    # Events land under date=/hour= ("hour") or date= only ("day": a six-month backfill is 180 files, not 4,300).
    partition: Literal["hour", "day"] = "hour"
    # Absent or null: every batch is exported on its own, one manifest and its own files per batch.
    coalesce: CoalesceSettings | None = None
    # What lands, and how (issue 15; the rules: docs/formats.md). Validated in this order: each may read the
    # fields before it (a field validator sees the valid ones in `info.data`), so each error names its field.
    parquet_columns: Literal["typed", "json"] | None = None  # absent with parquet: typed (_defaults)
    layout: Literal["hive", "dated", "template"] = "hive"  # absent with a path_template: template (_defaults)
    path_template: str | None = Field(default=None, validate_default=True)
    include_events: tuple[str, ...] = ()
    exclude_events: tuple[str, ...] = ()
    drop_properties: tuple[str, ...] = ()
    access_tier: Literal["hot", "cool", "cold"] | None = None
    alerts: AlertsIn | None = None  # absent: alerts go to ALERT_WEBHOOK_URL only

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Defaults that depend on another field: Parquet is zstd and typed unless told; a path_template given
        without a layout is the layout."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        if filled.get("format") == "parquet":
            filled.setdefault("compression", "zstd")
            filled.setdefault("parquet_columns", "typed")
        if filled.get("path_template") is not None:
            filled.setdefault("layout", "template")
        return filled

    @field_validator("compression")
    @classmethod
    def _compression(cls, value: str, info: ValidationInfo) -> str:
        if value == "snappy" and info.data.get("format", "parquet") != "parquet":
            raise ValueError("snappy is a Parquet codec: use gzip, zstd or none for jsonl and csv")
        return value

    @field_validator("parquet_columns")
    @classmethod
    def _parquet_columns(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("format", "parquet") != "parquet":
            raise ValueError(f"is for format parquet only, not {info.data['format']}: leave it out")
        return value

    @field_validator("path_template")
    @classmethod
    def _path_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        layout = info.data.get("layout")
        if value is None:
            if layout == "template":
                raise ValueError("give the folders' template with layout 'template'")
            return None
        if layout is not None and layout != "template":
            raise ValueError(f"is used with layout 'template', not '{layout}': leave layout out, or the template")
        return check_template(value, info.data.get("partition", "hour"))

    @field_validator("include_events", "exclude_events")
    @classmethod
    def _event_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _checked_list(value, "event names or patterns")

    @field_validator("drop_properties")
    @classmethod
    def _drop_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in _checked_list(value, "dotted paths"):
            if "" in path.split("."):
                raise ValueError(f"'{path}' has an empty segment: write paths as the columns are named, "
                                 "such as properties.$email")
        return value

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

    def output_settings(self) -> dict[str, Any]:
        """The output fields the stored record keeps: those that differ from the defaults, so that a destination
        that uses none of them is stored as before they existed."""
        found = {"parquet_columns": self.parquet_columns, "layout": self.layout, "path_template": self.path_template,
                 "include_events": self.include_events, "exclude_events": self.exclude_events,
                 "drop_properties": self.drop_properties, "access_tier": self.access_tier}
        return {name: value for name, value in found.items() if value != OUTPUT_DEFAULTS[name]}

    def account_url(self) -> str | None:
        if self.endpoint:
            return self.endpoint
        if self.account_name:
            return f"https://{self.account_name}.blob.core.windows.net"
        return None


def _checked_list(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    if len(values) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} {what}")
    for value in values:
        if not value or len(value) > MAX_PATTERN:
            raise ValueError(f"{what} are 1-{MAX_PATTERN} characters each")
        if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value):
            raise ValueError(f"{what} must not contain control characters")
    return values


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
        if err.get("type") == "union_tag_invalid":  # pydantic quotes the tag sent: "Input tag '<value>' found..."
            message = f"must be one of {err.get('ctx', {}).get('expected_tags', 'the documented types')}"
        sent = err.get("input")
        if isinstance(sent, str) and len(sent) >= 4 and sent in message:
            message = message.replace(sent, "(the value sent)")
        details.append({"field": ".".join(loc) or "body", "message": message})
    return details
