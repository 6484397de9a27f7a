"""SAS token parsing and checks (pure). The token itself is a secret: never put it in a message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

EXPIRY_WARNING_WINDOW = timedelta(days=7)
# Clock skew allowance for `st`: Azure accepts tokens whose start is slightly ahead of its own clock.
START_SKEW = timedelta(minutes=5)

_PERMISSION_WORDS = {
    "r": "read",
    "a": "add",
    "c": "create",
    "w": "write",
    "d": "delete",
    "x": "delete version",
    "y": "permanent delete",
    "l": "list",
    "t": "tags",
    "f": "find",
    "m": "move",
    "e": "execute",
    "o": "ownership",
    "p": "permissions",
    "i": "set immutability policy",
}


_RESOURCE_WORDS = {"b": "a single blob (sr=b)", "bs": "a blob snapshot (sr=bs)", "bv": "a blob version (sr=bv)",
                   "d": "a directory (sr=d)", "": "no resource (sr is missing)"}
_PROTOCOLS = frozenset({"https", "https,http", "http,https"})


class SasError(ValueError):
    """A SAS token is unusable; the message says why in plain words."""


@dataclass(frozen=True)
class SasInfo:
    """The non-secret facts of a SAS token (everything but the signature)."""

    permissions: str
    expiry: datetime | None
    start: datetime | None
    protocol: str | None
    resource: str | None
    is_account_sas: bool

    @property
    def can_read(self) -> bool:
        return "r" in self.permissions

    @property
    def can_write(self) -> bool:
        return "w" in self.permissions

    @property
    def can_delete(self) -> bool:
        return "d" in self.permissions

    def permission_words(self) -> list[str]:
        return [_PERMISSION_WORDS.get(p, p) for p in self.permissions]

    def to_public(self) -> dict[str, object]:
        return {
            "permissions": self.permissions,
            "permission_names": self.permission_words(),
            "expiry": format_time(self.expiry) if self.expiry else None,
            "start": format_time(self.start) if self.start else None,
            "protocol": self.protocol,
            "resource": self.resource,
            "account_sas": self.is_account_sas,
        }

    @classmethod
    def from_public(cls, data: dict[str, object]) -> SasInfo:
        return cls(
            permissions=str(data.get("permissions") or ""),
            expiry=parse_sas_time(str(data["expiry"])) if data.get("expiry") else None,
            start=parse_sas_time(str(data["start"])) if data.get("start") else None,
            protocol=str(data["protocol"]) if data.get("protocol") else None,
            resource=str(data["resource"]) if data.get("resource") else None,
            is_account_sas=bool(data.get("account_sas")),
        )


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") if value.second == 0 else (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def parse_sas_time(text: str, field: str = "time") -> datetime:
    """Parse the ISO 8601 forms Azure accepts in `se`/`st` (date, minutes, seconds, fractions).

    The error names the field, never the text: it is part of a secret token.
    """
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    if "." in cleaned:
        head, _, rest = cleaned.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        cleaned = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise SasError(f"the SAS token's {field} is not an ISO 8601 date-time such as 2026-12-31T00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_sas(token: str) -> SasInfo:
    """Read the fields of a SAS token (with or without a leading '?', or a full blob URL)."""
    text = token.strip()
    if "?" in text:
        text = text.split("?", 1)[1]
    fields = parse_qs(text, keep_blank_values=True)
    if "sig" not in fields or not fields["sig"][0]:
        raise SasError("this is not a SAS token: it has no signature (sig)")
    if "sp" not in fields:
        raise SasError("the SAS token has no permissions (sp)")
    permissions = fields["sp"][0]
    if not set(permissions) <= set(_PERMISSION_WORDS):
        raise SasError("the SAS token's permissions (sp) hold letters Azure does not define; generate it again")
    is_account = "ss" in fields or "srt" in fields
    if is_account:
        if "b" not in fields.get("ss", [""])[0]:
            raise SasError("the account SAS does not cover the Blob service (ss must include b)")
        if "o" not in fields.get("srt", [""])[0]:
            raise SasError("the account SAS does not cover objects (srt must include o)")
    resource = fields.get("sr", [None])[0]
    if not is_account and resource != "c":
        # A blob SAS (sr=b), a directory SAS (sr=d) or a snapshot/version SAS reaches one object, not a
        # container the export writes many blobs into.
        raise SasError(
            f"the SAS token is for {_RESOURCE_WORDS.get(resource or '', 'an unknown resource')}, not a container "
            "(sr=c): generate a container SAS (or an account SAS) with read and write"
        )
    protocol = fields.get("spr", [None])[0]
    if protocol is not None and protocol not in _PROTOCOLS:
        raise SasError("the SAS token's protocol (spr) must be https or https,http")
    expiry = parse_sas_time(fields["se"][0], "expiry (se)") if fields.get("se", [""])[0] else None
    start = parse_sas_time(fields["st"][0], "start (st)") if fields.get("st", [""])[0] else None
    return SasInfo(
        permissions=permissions,
        expiry=expiry,
        start=start,
        protocol=protocol,
        resource=resource,
        is_account_sas=is_account,
    )


def check_sas_usable(info: SasInfo, now: datetime) -> None:
    """Refuse a token the export cannot use: no read or write, expired, or not yet valid."""
    missing = [word for flag, word in (("r", "read"), ("w", "write")) if flag not in info.permissions]
    if missing:
        raise SasError(
            f"the SAS token lacks {' and '.join(missing)} permission (it grants: "
            f"{', '.join(info.permission_words()) or 'nothing'}); generate one with at least read and write"
        )
    expired = expired_message(info, now)
    if expired is not None:
        raise SasError(expired)
    if info.start is not None and info.start > now + START_SKEW:
        raise SasError(
            f"the SAS token is not valid until {format_time(info.start)}; use a token valid from now"
        )


def expired_message(info: SasInfo, now: datetime) -> str | None:
    """What a customer must do about an expired token, or None while it is valid."""
    if info.expiry is None or info.expiry > now:
        return None
    return f"the SAS token expired on {format_time(info.expiry)}; renew it and update the destination"


def sas_warnings(info: SasInfo, now: datetime) -> list[str]:
    warnings = []
    if info.expiry is None:
        warnings.append("the SAS token has no expiry (se) in its query; it may rely on a stored access policy")
    elif now < info.expiry <= now + EXPIRY_WARNING_WINDOW:
        days = (info.expiry - now).total_seconds() / 86400
        warnings.append(
            f"the SAS token expires on {format_time(info.expiry)} (in {days:.1f} days); "
            "renew it and update the destination before then"
        )
    if not info.can_delete:
        warnings.append(
            "the SAS token has no delete permission: a re-exported batch cannot remove parts it no longer "
            "writes (its manifest still lists exactly the valid files)"
        )
    return warnings
