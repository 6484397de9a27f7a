"""The stored destination: the document control storage keeps for a destination (no secret, only its name).

Typed so that a mistyped key fails in mypy, not at run time, and loaded from and saved as exactly the JSON
documents the app has always written: optional keys absent from a document stay absent when it is saved
again (`exclude_unset`), and keys keep their order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.control.batch_state import BatchState
from shared.destinations.sas import SasInfo

AuthType = Literal["sas", "service_principal", "managed_identity", "connection_string"]


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoredSas(_Stored):
    """The non-secret facts of a SAS token, as `SasInfo.to_public()` gives them."""

    permissions: str
    permission_names: list[str]
    expiry: str | None
    start: str | None
    protocol: str | None
    resource: str | None
    account_sas: bool

    def info(self) -> SasInfo:
        return SasInfo.from_public(self.model_dump())


class StoredAuth(_Stored):
    """How the app authenticates: the secret's name (never the secret), and the facts around it."""

    type: AuthType
    secret_name: str | None = None
    sas: StoredSas | None = None
    tenant_id: str | None = None  # service principal
    client_id: str | None = None  # service principal, or a user-assigned managed identity


class CoalesceSettings(_Stored):
    """Batches of one destination and record type due together are exported as one run: one file per
    partition and one manifest for all of them."""

    max_delay_seconds: int = Field(
        default=300, ge=0, le=86_400,
        description="How long a batch may wait for others to join its run; 0 exports what is due at once.")
    target_file_mb: int = Field(
        default=128, ge=1, le=4096, description="A run closes once its batches' staged records reach this size.")


class PauseNote(_Stored):
    """Why a destination is paused (issue 17): its exports skip it while intake still stages its batches."""

    at: str  # ISO time of the pause
    by: Literal["auto", "operator"]  # auto: AUTO_PAUSE_AFTER consecutive failed export runs
    reason: str  # in words, for the status and the console
    failed_runs: int | None = None  # for an automatic pause: the consecutive failed runs that caused it


class StoredAlerts(_Stored):
    """A destination's own alert webhook (issue 17). Its URL is a secret (a Slack or Teams webhook URL is its own
    credential): the secret store keeps it under `webhook_secret_name`, the record only its origin."""

    webhook_secret_name: str
    webhook_origin: str  # scheme://host[:port], what the API shows


OUTPUT_DEFAULTS: dict[str, Any] = {
    "parquet_columns": None, "layout": "hive", "path_template": None, "include_events": (), "exclude_events": (),
    "drop_properties": (), "access_tier": None,
}


class DestinationRecord(_Stored):
    id: str
    account_name: str | None = None
    account_url: str | None = None  # None only for a connection string the SDK reads itself
    container: str
    prefix: str
    format: Literal["jsonl", "csv", "parquet"]
    compression: Literal["gzip", "zstd", "snappy", "none"]
    auth: StoredAuth
    created_at: str
    updated_at: str
    # New at each creation (absent from records created before issue 11): a destination deleted and created
    # again under the same id is another destination, and never exports the earlier one's batches (`owns`).
    generation: str | None = None
    # The destination partition of events: "hour" (date=/hour=) or "day" (date= only). Absent: "hour".
    partition: Literal["hour", "day"] = "hour"
    # Absent or None: every batch is its own run (one manifest, files named by the batch's id).
    coalesce: CoalesceSettings | None = None
    # What lands, and how (issue 15; docs/formats.md). Absent: the defaults (OUTPUT_DEFAULTS), as before them.
    parquet_columns: Literal["typed", "json"] | None = None  # set for parquet only
    layout: Literal["hive", "dated", "template"] = "hive"
    path_template: str | None = None  # the folders, with layout "template" (shared.formats.layouts)
    include_events: tuple[str, ...] = ()
    exclude_events: tuple[str, ...] = ()
    drop_properties: tuple[str, ...] = ()
    access_tier: Literal["hot", "cool", "cold"] | None = None  # None: the account's default tier
    # Issue 17. Absent: not paused (exports run), and alerts only to ALERT_WEBHOOK_URL.
    paused: PauseNote | None = None
    alerts: StoredAlerts | None = None

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> DestinationRecord:
        return cls.model_validate(document)

    def to_json(self) -> dict[str, Any]:
        """The stored document: every key that was given, in field order."""
        return self.model_dump(exclude_unset=True)

    def output_view(self) -> dict[str, Any]:
        """The output fields as the API shows them, defaults included."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((name, getattr(self, name)) for name in OUTPUT_DEFAULTS)}

    @property
    def secret_name(self) -> str | None:
        return self.auth.secret_name

    def owns(self, batch: BatchState) -> bool:
        """Whether a batch was accepted for this destination, not for an earlier one with the same id.

        A batch that names no generation (staged before issue 11, or by an older instance) belongs to it if
        it was accepted after this destination was created (intake refuses batches for a missing destination).
        """
        if batch.destination_generation is not None:
            return batch.destination_generation == self.generation
        return self.generation is None or batch.created_at >= datetime.fromisoformat(self.created_at)

    def where(self) -> str:
        """`container 'x' at https://...`, for messages."""
        return f"container '{self.container}' at {self.account_url or 'the connection string endpoint'}"
