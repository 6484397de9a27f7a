"""Destinations: stored in control storage (no secrets), their secrets in the secret store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from shared.control import cursors, destination_activity, destination_batches
from shared.control.alerts_outbox import raise_best_effort
from shared.control.destination_schemas import schema_blob
from shared.control.store import ControlStore, PreconditionFailed
from shared.destinations import pauses
from shared.destinations.connection_strings import blob_endpoint_of
from shared.destinations.models import DestinationIn, check_destination_id, validation_details
from shared.destinations.record import DestinationRecord, PauseNote, StoredAlerts, StoredAuth, StoredSas
from shared.destinations.sas import SasError, check_sas_usable, expired_message, parse_sas, sas_warnings
from shared.destinations.token_endpoints import (
    TOKEN_AUTH_TYPES,
    TokenEndpointRefused,
    check_managed_identity_account,
    token_endpoint_account,
)
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.logging_setup import log_event
from shared.secrets.cache import CachedSecrets
from shared.secrets.names import APP_SECRET_PREFIX, is_app_secret_name, is_own_secret_name, new_secret_name
from shared.secrets.store import SecretNotFoundError, SecretStoreError
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
    resumed: bool = False  # it was paused, and new credentials resumed it (issue 17)


def _alerts_given(alerts: StoredAlerts | None) -> dict[str, Any]:
    """Absent from the stored record when not given, as the other optional fields."""
    return {} if alerts is None else {"alerts": alerts}


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL checked by `check_webhook_url`: what may be shown of a webhook."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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


def _generation(previous: DestinationRecord | None) -> dict[str, Any]:
    """A new destination gets a generation of its own; a replaced one keeps the one it had (or none)."""
    if previous is None:
        return {"generation": uuid.uuid4().hex}
    return {} if previous.generation is None else {"generation": previous.generation}


# Proves a destination not saved yet (record, secret): raises DestinationProblem (see destination_access).
Verifier = Callable[[DestinationRecord, str | None], Any]


@dataclass
class DestinationService:
    control: ControlStore
    secrets: CachedSecrets
    settings: Settings
    verifier: Verifier | None = None
    clock: Callable[[], datetime] = _now

    def put(self, destination_id: str, body: Any, *, verify: bool = True) -> PutResult:
        """Validate everything, prove the credentials (unless `verify` is off), and only then save.

        Save order: the secret under a name of its own for this save, then the record naming it (a
        conditional write), then the secret of the record it replaced is deleted. A save that loses a race
        deletes its own secret; a crash before the record write leaves only an unreferenced secret, never a
        record whose secret is another save's.
        """
        require_valid_id(destination_id)
        dest = parse_destination(body, self.settings)
        now = self.clock()
        account_url, account_name = dest.account_url(), dest.account_name
        self._check_token_endpoint(dest, account_url)
        existing = self.control.get(destination_blob(destination_id))
        previous = DestinationRecord.from_json(existing.data) if existing else None
        own_secret = previous.secret_name if previous else None
        given_secret = _secret_value(dest)
        named = getattr(dest.auth, "secret_name", None)
        secret = self._usable_named_secret(named, own_secret) if named is not None else given_secret
        secret_name = new_secret_name(destination_id) if given_secret is not None else named
        auth_record = self._auth_record(dest, secret_name, secret, now)
        if dest.auth.type == "connection_string" and secret is not None:
            try:
                cs_url, cs_account = blob_endpoint_of(secret, allow_http_loopback=self.settings.allow_http_loopback)
            except ValueError as exc:
                raise _fail("auth.connection_string", str(exc)) from None
            account_url, account_name = account_url or cs_url, account_name or cs_account
        changed = previous is None or given_secret is not None or previous.auth != auth_record
        alerts, webhook = self._alerts_record(dest, destination_id, previous)
        record = DestinationRecord(
            id=destination_id, account_name=account_name, account_url=account_url, container=dest.container,
            prefix=dest.prefix, format=dest.format, compression=dest.compression, auth=auth_record,
            created_at=previous.created_at if previous else now.isoformat(), updated_at=now.isoformat(),
            partition=dest.partition, coalesce=dest.coalesce, **dest.output_settings(), **_generation(previous),
            **pauses.pause_kept(previous, changed), **_alerts_given(alerts),
        )
        if verify and self.verifier is not None:
            self.verifier(record, secret)
        if previous is not None and previous.paused is not None and record.paused is None:
            # New credentials resume it: its failing streak ends first, as a resume's does (`resume`).
            destination_activity.reset_streak(self.control, destination_id, previous.generation, now,
                                              resumed=pauses.ended(previous, now))
        if given_secret is not None and secret_name is not None:
            self.secrets.set(secret_name, given_secret)
        if webhook is not None and alerts is not None:
            self.secrets.set(alerts.webhook_secret_name, webhook)
        try:
            if existing:
                self.control.put(destination_blob(destination_id), record.to_json(), etag=existing.etag)
            else:
                self.control.put(destination_blob(destination_id), record.to_json(), create_only=True)
        except PreconditionFailed:
            if given_secret is not None and secret_name is not None:
                self._delete_own_secret(destination_id, secret_name)
            if webhook is not None and alerts is not None:
                self._delete_own_secret(destination_id, alerts.webhook_secret_name)
            raise Conflict(
                f"destination '{destination_id}' was changed by another request at the same time; retry"
            ) from None
        if own_secret and own_secret.lower() != (secret_name or "").lower():
            self._delete_own_secret(destination_id, own_secret)
        old_webhook = previous.alerts.webhook_secret_name if previous and previous.alerts else None
        if old_webhook and old_webhook.lower() != (alerts.webhook_secret_name.lower() if alerts else ""):
            self._delete_own_secret(destination_id, old_webhook)
        resumed = previous is not None and previous.paused is not None and record.paused is None
        log_event(log, "destination saved", destination_id=destination_id, new=existing is None,
                  auth_type=dest.auth.type, verified=verify and self.verifier is not None, resumed=resumed)
        return PutResult(self.view(record), created=existing is None, credentials_changed=changed, resumed=resumed)

    def _alerts_record(self, dest: DestinationIn, destination_id: str,
                       previous: DestinationRecord | None) -> tuple[StoredAlerts | None, str | None]:
        """The destination's own alert webhook as the record keeps it (its secret's name and its origin), and the
        URL to store under that name when the body gives a new one. `webhook_secret_name` keeps the current one,
        and names no other secret: a webhook URL is sent to, so it must be one given for this destination."""
        given = dest.alerts
        if given is None:
            return None, None
        if given.webhook_url is not None:
            url = given.webhook_url.get_secret_value()
            return StoredAlerts(webhook_secret_name=new_secret_name(destination_id), webhook_origin=origin_of(url)), url
        current = previous.alerts if previous is not None else None
        if current is None or (given.webhook_secret_name or "").lower() != current.webhook_secret_name.lower():
            raise _fail("alerts.webhook_secret_name", "only the name of this destination's current webhook secret "
                        "(as GET shows it) keeps its webhook; give webhook_url to set one")
        return current, None

    def _check_token_endpoint(self, dest: DestinationIn, account_url: str | None) -> None:
        """Token auth only towards Azure Storage; the app's own identity only towards listed accounts."""
        if dest.auth.type not in TOKEN_AUTH_TYPES or account_url is None:
            return
        field = "endpoint" if dest.endpoint else "account_name"
        try:
            account = token_endpoint_account(account_url, extra_suffixes=self.settings.token_auth_endpoint_suffixes,
                                             allow_loopback=self.settings.allow_http_loopback)
            if dest.auth.type == "managed_identity":
                check_managed_identity_account(account, self.settings.managed_identity_accounts)
        except TokenEndpointRefused as exc:
            raise _fail(field, str(exc)) from None

    def _usable_named_secret(self, name: str, own_secret: str | None) -> str:
        """The value of a secret the customer named, if this destination may use it.

        A destination may name a secret the customer stored (outside the app's own names, and inside
        CUSTOMER_SECRET_PREFIX when set) or the one it already uses. A missing and a forbidden name get
        the same answer, so the answer does not tell which names exist.
        """
        prefix = self.settings.customer_secret_prefix
        allowed = (own_secret is not None and name.lower() == own_secret.lower()) or (
            not is_app_secret_name(name) and name.lower().startswith(prefix.lower())
        )
        if allowed:
            try:
                return self.secrets.get(name)
            except SecretNotFoundError:
                pass
        rule = f" whose name starts with '{prefix}'" if prefix else ""
        raise _fail(
            "auth.secret_name",
            f"no secret named '{name}' can be used by this destination: it does not exist, or this destination "
            f"may not use it. Name a secret you stored in the app's secret store{rule}, or the one this "
            f"destination already uses (names beginning '{APP_SECRET_PREFIX}' are the app's own)",
        )

    def _delete_own_secret(self, destination_id: str, name: str) -> None:
        """Delete a secret the app wrote for this destination; a customer's own secret always stays theirs."""
        if not is_own_secret_name(name, destination_id):
            return
        try:
            self.secrets.delete(name)
        except SecretStoreError as exc:  # the save stands; the unreferenced secret can be deleted later
            log_event(log, "could not delete a replaced secret", logging.WARNING, destination_id=destination_id,
                      secret_name=name, error=type(exc).__name__)

    def _auth_record(
        self, dest: DestinationIn, secret_name: str | None, secret: str | None, now: datetime
    ) -> StoredAuth:
        """What is stored of the auth: only the fields an auth type has, so the document keeps its shape."""
        auth = dest.auth
        fields: dict[str, Any] = {"type": auth.type}
        if auth.type != "managed_identity":
            fields["secret_name"] = secret_name
        if auth.type == "sas" and secret is not None:
            field = "auth.sas_token" if auth.sas_token is not None else "auth.secret_name"
            try:
                info = parse_sas(secret)
                check_sas_usable(info, now)
            except SasError as exc:
                raise _fail(field, str(exc)) from None
            fields["sas"] = StoredSas.model_validate(info.to_public())
        if auth.type == "service_principal":
            fields.update(tenant_id=auth.tenant_id, client_id=auth.client_id)
        if auth.type == "managed_identity" and auth.client_id:
            fields["client_id"] = auth.client_id
        return StoredAuth(**fields)

    def get_record(self, destination_id: str) -> DestinationRecord:
        require_valid_id(destination_id)
        doc = self.control.get(destination_blob(destination_id))
        if doc is None:
            raise NotFound(f"destination '{destination_id}' does not exist")
        return DestinationRecord.from_json(doc.data)

    def pause(self, destination_id: str, *, by: Literal["auto", "operator"], reason: str,
              failed_runs: int | None = None, generation: str | None = None) -> tuple[DestinationRecord, bool]:
        """Pause the destination: its exports skip it, intake still stages its batches (issue 17). Returns the
        record and whether this call paused it (False: it was paused already, and keeps its first reason).
        With `generation` (an automatic pause), only that generation of the destination is paused."""
        require_valid_id(destination_id)
        note = PauseNote(at=self.clock().isoformat(), by=by, reason=pauses.checked_reason(reason),
                         failed_runs=failed_runs)
        record, changed = pauses.rewrite(self.control, destination_blob(destination_id), destination_id,
                                         pauses.with_pause(note, generation))
        if changed:
            log_event(log, "destination paused", logging.WARNING, destination_id=destination_id, by=by,
                      failed_runs=failed_runs, reason=repr(note.reason))
            raise_best_effort(self.control, pauses.paused_alert(record, self.clock()))
        return record, changed

    def resume(self, destination_id: str) -> tuple[DestinationRecord, bool]:
        """Resume a paused destination; returns the record and whether it was paused. The caller makes its
        waiting batches due and sends their export messages.

        The failing streak ends first: a crash after it leaves the destination paused (resume again), never
        resumed with the streak that paused it, which the timer would take for a reason to pause it again."""
        current, moment = self.get_record(destination_id), self.clock()
        destination_activity.reset_streak(self.control, destination_id, current.generation, moment,
                                          resumed=pauses.ended(current, moment))
        record, changed = pauses.rewrite(self.control, destination_blob(destination_id), destination_id,
                                         pauses.without_pause)
        if changed:
            log_event(log, "destination resumed", destination_id=destination_id)
        return record, changed

    def pause_if_failing(self, destination_id: str) -> bool:
        """Pause the destination once its latest AUTO_PAUSE_AFTER export runs all failed (issue 17; a coalesced
        run counts once); True if this call paused it. Called after a pass that failed one of its batches, and by
        the timer for a pause a crash lost."""
        after = self.settings.auto_pause_after
        record = self.get_record(destination_id)
        if after <= 0 or record.paused is not None:
            return False
        activity = destination_activity.read_activity(self.control, destination_id)
        failing = destination_activity.failing_runs(activity, record.generation)
        if len(failing) < after:
            return False
        return self.pause(destination_id, by="auto", reason=pauses.auto_pause_reason(failing, after),
                          failed_runs=len(failing), generation=record.generation)[1]

    def get(self, destination_id: str) -> dict[str, Any]:
        return self.view(self.get_record(destination_id))

    def list(self, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """A page of destinations in id order, with the cursor of the next page (None: the last)."""
        place = cursors.unseal(self.control, cursor, "destinations")
        items, token = self.control.list_page(DESTINATIONS_PREFIX, page_size=limit,
                                              continuation=place.token if place is not None else None)
        views = []
        for item in items:
            doc = self.control.get(item.name)
            if doc is not None:  # deleted since the listing
                views.append(self.view(DestinationRecord.from_json(doc.data)))
        next_place = cursors.Place(DESTINATIONS_PREFIX, token) if token else None
        return {"destinations": views, "next": cursors.seal(self.control, next_place, "destinations")}

    def delete(self, destination_id: str, *, force: bool = False) -> None:
        """Delete the destination, its own secret, and (only with `force`) what it has not landed yet.

        Without `force`, a destination with batches not landed (pending, running, or failed and retryable) is
        refused with a 409 that says how many. With it, those batches fail first with the reason "destination
        deleted" and their staged records are deleted; a batch being exported right now is left to its worker.
        """
        record = self.get_record(destination_id)
        waiting = destination_batches.not_landed(self.control, destination_id)
        if waiting and not force:
            message = (f"destination '{destination_id}' has {len(waiting)} batch(es) not yet landed (pending, "
                       "running, or failed and waiting for a retry); wait for them to land, or delete with "
                       "?force=true to fail them with the reason 'destination deleted' and delete their records")
            raise Conflict(message, code="batches_not_landed",
                           details=[{"field": "force", "message": message, "batches_not_landed": len(waiting)}])
        if waiting:
            abandoned = destination_batches.fail_for_deleted_destination(self.control, destination_id, waiting,
                                                                         self.clock())
            log_event(log, "batches failed: destination deleted", destination_id=destination_id,
                      failed=abandoned.failed, still_running=len(abandoned.running))
        self.control.delete(destination_blob(destination_id))
        self.control.delete(schema_blob(destination_id, record.generation))  # a typed Parquet destination's
        name = record.secret_name
        if name and is_own_secret_name(name, destination_id):
            self.secrets.delete(name)
        if record.alerts is not None:
            self._delete_own_secret(destination_id, record.alerts.webhook_secret_name)
        log_event(log, "destination deleted", destination_id=destination_id)

    def view(self, record: DestinationRecord) -> dict[str, Any]:
        """The public shape: no secret, a SAS token's permissions and expiry, and warnings."""
        warnings: list[str] = []
        if record.auth.sas is not None:
            info = record.auth.sas.info()
            warnings = sas_warnings(info, self.clock())
            expired = expired_message(info, self.clock())
            if expired is not None:
                warnings.insert(0, expired)
        return {
            "id": record.id,
            "account_name": record.account_name,
            "endpoint": record.account_url,
            "container": record.container,
            "prefix": record.prefix,
            "format": record.format,
            "compression": record.compression,
            "partition": record.partition,
            "coalesce": record.coalesce.model_dump() if record.coalesce is not None else None,
            **record.output_view(),
            "auth": record.auth.model_dump(exclude_unset=True),
            "paused": record.paused.model_dump() if record.paused is not None else None,
            "alerts": record.alerts.model_dump() if record.alerts is not None else None,
            "warnings": warnings,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
