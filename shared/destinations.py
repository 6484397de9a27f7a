"""Destinations: stored in control storage (no secrets), their secrets in the secret store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.connection_strings import blob_endpoint_of
from shared.control_store import ControlStore, PreconditionFailed
from shared.destination_models import DestinationIn, check_destination_id, validation_details
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.logging_setup import log_event
from shared.sas import SasError, SasInfo, check_sas_usable, expired_message, parse_sas, sas_warnings
from shared.secrets import CachedSecrets, SecretNotFoundError, secret_name_for
from shared.settings import Settings

log = logging.getLogger(__name__)

DESTINATIONS_PREFIX = "destinations/"


def _now() -> datetime:
    return datetime.now(UTC)


def destination_blob(destination_id: str) -> str:
    return f"{DESTINATIONS_PREFIX}{destination_id}.json"


def require_valid_id(destination_id: str) -> str:
    try:
        return check_destination_id(destination_id)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details=[{"field": "id", "message": str(exc)}]) from None


@dataclass(frozen=True)
class PutResult:
    view: dict[str, Any]
    created: bool
    credentials_changed: bool


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"the destination is invalid: {field}: {message}", details=[{"field": field, "message": message}]
    )


def parse_destination(body: Any, settings: Settings) -> DestinationIn:
    try:
        return DestinationIn.model_validate(body, context={"allow_http_loopback": settings.allow_http_loopback})
    except ValidationError as exc:
        details = validation_details(exc.errors(include_input=False, include_url=False))
        fields = ", ".join(d["field"] for d in details)
        raise ValidationFailed(f"the destination is invalid ({fields})", details=details) from None


def _secret_value(dest: DestinationIn) -> str | None:
    auth = dest.auth
    for field in ("sas_token", "client_secret", "connection_string"):
        secret = getattr(auth, field, None)
        if secret is not None:
            return str(secret.get_secret_value())
    return None


@dataclass
class DestinationService:
    control: ControlStore
    secrets: CachedSecrets
    settings: Settings
    clock: Callable[[], datetime] = _now

    def put(self, destination_id: str, body: Any) -> PutResult:
        """Validate everything first; only then write the secret and the record."""
        require_valid_id(destination_id)
        dest = parse_destination(body, self.settings)
        now = self.clock()
        given_secret = _secret_value(dest)
        secret_name = getattr(dest.auth, "secret_name", None)
        given_check: str | None = given_secret
        if dest.auth.type != "managed_identity" and given_secret is None and secret_name is not None:
            given_check = self._read_named_secret(secret_name)
        auth_record = self._auth_record(dest, destination_id, given_check, now)
        account_url, account_name = dest.account_url(), dest.account_name
        if dest.auth.type == "connection_string" and given_check is not None:
            try:
                cs_url, cs_account = blob_endpoint_of(
                    given_check, allow_http_loopback=self.settings.allow_http_loopback
                )
            except ValueError as exc:
                raise _fail("auth.connection_string", str(exc)) from None
            account_url, account_name = account_url or cs_url, account_name or cs_account

        existing = self.control.get(destination_blob(destination_id))
        if given_secret is not None:
            self.secrets.set(auth_record["secret_name"], given_secret)
        record: dict[str, Any] = {
            "id": destination_id,
            "account_name": account_name,
            "account_url": account_url,
            "container": dest.container,
            "prefix": dest.prefix,
            "format": dest.format,
            "compression": dest.compression,
            "auth": auth_record,
            "created_at": existing.data["created_at"] if existing else now.isoformat(),
            "updated_at": now.isoformat(),
        }
        try:
            if existing:
                self.control.put(destination_blob(destination_id), record, etag=existing.etag)
            else:
                self.control.put(destination_blob(destination_id), record, create_only=True)
        except PreconditionFailed:
            raise Conflict(
                f"destination '{destination_id}' was changed by another request at the same time; retry"
            ) from None
        changed = existing is None or given_secret is not None or existing.data.get("auth") != auth_record
        log_event(log, "destination saved", destination_id=destination_id, new=existing is None,
                  auth_type=dest.auth.type)
        return PutResult(self.view(record), created=existing is None, credentials_changed=changed)

    def _read_named_secret(self, secret_name: str) -> str:
        try:
            return self.secrets.get(secret_name)
        except SecretNotFoundError as exc:
            raise _fail("auth.secret_name", str(exc)) from None

    def _auth_record(
        self, dest: DestinationIn, destination_id: str, secret: str | None, now: datetime
    ) -> dict[str, Any]:
        auth = dest.auth
        record: dict[str, Any] = {"type": auth.type}
        if auth.type != "managed_identity":
            record["secret_name"] = getattr(auth, "secret_name", None) or secret_name_for(destination_id)
        if auth.type == "sas" and secret is not None:
            field = "auth.sas_token" if auth.sas_token is not None else "auth.secret_name"
            try:
                info = parse_sas(secret)
                check_sas_usable(info, now)
            except SasError as exc:
                raise _fail(field, str(exc)) from None
            record["sas"] = info.to_public()
        if auth.type == "service_principal":
            record["tenant_id"] = auth.tenant_id
            record["client_id"] = auth.client_id
        if auth.type == "managed_identity" and auth.client_id:
            record["client_id"] = auth.client_id
        return record

    def get_record(self, destination_id: str) -> dict[str, Any]:
        require_valid_id(destination_id)
        doc = self.control.get(destination_blob(destination_id))
        if doc is None:
            raise NotFound(f"destination '{destination_id}' does not exist")
        return doc.data

    def get(self, destination_id: str) -> dict[str, Any]:
        return self.view(self.get_record(destination_id))

    def list(self) -> list[dict[str, Any]]:
        views = []
        for item in self.control.list(DESTINATIONS_PREFIX):
            doc = self.control.get(item.name)
            if doc is not None:
                views.append(self.view(doc.data))
        return views

    def delete(self, destination_id: str) -> None:
        record = self.get_record(destination_id)
        self.control.delete(destination_blob(destination_id))
        name = record["auth"].get("secret_name")
        if name == secret_name_for(destination_id):
            # Only the secret this app created; a secret the customer named stays theirs.
            self.secrets.delete(name)
        log_event(log, "destination deleted", destination_id=destination_id)

    def view(self, record: dict[str, Any]) -> dict[str, Any]:
        """The public shape: no secret, a SAS token's permissions and expiry, and warnings."""
        auth = dict(record["auth"])
        warnings: list[str] = []
        if "sas" in auth:
            info = SasInfo.from_public(auth["sas"])
            warnings = sas_warnings(info, self.clock())
            expired = expired_message(info, self.clock())
            if expired is not None:
                warnings.insert(0, expired)
        return {
            "id": record["id"],
            "account_name": record.get("account_name"),
            "endpoint": record.get("account_url"),
            "container": record["container"],
            "prefix": record["prefix"],
            "format": record["format"],
            "compression": record["compression"],
            "auth": auth,
            "warnings": warnings,
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
        }
