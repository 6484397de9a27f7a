"""The shapes of the API's answers, for the OpenAPI document only: routes still answer with `json_response`.

Each model here describes what a route sends (the dictionaries built by shared.destinations.service,
shared.control.batches, shared.intake.accept, shared.export.runner, shared.destinations.probe and
shared.control.destination_status), so that client generators and API gateways read the same contract the API
keeps. tests/shared/api/test_openapi.py checks real answers against these schemas, with every undocumented field
refused, so the two cannot drift.

The request body of PUT /api/destinations/{id} is `DestinationIn` itself (shared.destinations.models): its
schema goes into the document's components here, with public words in place of its docstrings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.api.responses import MAX_PAGE
from shared.control.batch_state import STATES, RecordType, StateName
from shared.destinations.models import DestinationIn
from shared.destinations.record import AuthType

NEXT_PAGE = ("The cursor of the following page: pass it back unchanged as `next` (with the same filters) to "
             "get that page; null on the last page. Opaque: its content is not part of the contract.")


# --- Destinations ------------------------------------------------------------------------------------------


class SasFacts(BaseModel):
    """The non-secret facts of the destination's SAS token (everything but its signature)."""

    permissions: str = Field(description="The token's `sp` letters, such as `rwdl`.")
    permission_names: list[str] = Field(description="The permissions in words: read, write, delete, ...")
    expiry: str | None = Field(description="When the token expires (UTC, as the token gives it); null if never.")
    start: str | None = Field(description="When the token starts being valid (UTC); null if at once.")
    protocol: str | None = Field(description="The token's `spr`, such as `https` or `https,http`.")
    resource: str | None = Field(description="The token's `sr`: `c` for a container SAS; null for an account SAS.")
    account_sas: bool = Field(description="Whether it is an account SAS rather than a container SAS.")


class DestinationAuthView(BaseModel):
    """How the app authenticates to the destination: never a secret, only the name it is stored under."""

    type: AuthType
    secret_name: str | None = Field(
        None, description="The name of the secret in the app's secret store (absent for managed_identity).")
    sas: SasFacts | None = Field(None, description="For `sas`: the token's non-secret facts.")
    tenant_id: str | None = Field(None, description="For `service_principal`: its Entra ID tenant.")
    client_id: str | None = Field(
        None, description="For `service_principal`, its client id; for `managed_identity`, a user-assigned "
                          "identity's client id (absent for the app's system-assigned identity).")


class CoalesceView(BaseModel):
    """Batches of one destination and record type due together are exported as one run: one file per
    partition and one manifest for all of them."""

    max_delay_seconds: int = Field(description="How long a batch may wait for others to join its run.")
    target_file_mb: int = Field(description="A run closes once its batches' staged records reach this size.")


class PausedView(BaseModel):
    """Why the destination is paused: its exports skip it; intake still accepts and stages its batches."""

    at: datetime = Field(description="When it was paused.")
    by: Literal["auto", "operator"] = Field(
        description="`auto`: after AUTO_PAUSE_AFTER consecutive failed export runs; `operator`: POST .../pause.")
    reason: str = Field(description="Why, in words (the last failure's for an automatic pause).")
    failed_runs: int | None = Field(description="For `auto`: the consecutive failed export runs that paused it.")


class AlertsView(BaseModel):
    """The destination's own alert webhook (besides ALERT_WEBHOOK_URL): only its origin is shown, since a webhook
    URL is its own credential."""

    webhook_origin: str = Field(description="The webhook's scheme, host and port, such as https://hooks.slack.com.")
    webhook_secret_name: str = Field(
        description="The secret holding the webhook's URL in the app's secret store: give it back as "
                    "`alerts.webhook_secret_name` in a PUT to keep the webhook.")


class DestinationView(BaseModel):
    """A destination as the API shows it: no secret, a SAS token's facts, and warnings to act on."""

    id: str = Field(description="The destination's id, as given in the path.")
    account_name: str | None = Field(description="The storage account, when it was given by name.")
    endpoint: str | None = Field(
        description="The blob endpoint the app writes to; null only for a connection string whose endpoint the "
                    "Azure SDK derives itself.")
    container: str
    prefix: str = Field(description="Prepended to every blob name; empty, or ending with '/'.")
    format: Literal["jsonl", "csv", "parquet"]
    compression: Literal["gzip", "zstd", "snappy", "none"] = Field(
        description="Of the whole file for jsonl and csv (`.gz`, `.zst`); inside the file for parquet.")
    partition: Literal["hour", "day"] = Field(
        description="Events land under date=YYYY-MM-DD/hour=HH/ (`hour`) or date=YYYY-MM-DD/ (`day`).")
    coalesce: CoalesceView | None = Field(
        description="null: every batch is exported on its own, with its own files and manifest.")
    parquet_columns: Literal["typed", "json"] | None = Field(
        description="For parquet: `typed` (a column a field) or `json` (the record's JSON text in `properties`); "
                    "null for the other formats.")
    layout: Literal["hive", "dated", "template"] = Field(
        description="The folders: `hive` ({type}/date=YYYY-MM-DD/hour=HH/), `dated` ({type}/YYYY/MM/DD/HH/) or "
                    "`template` (`path_template`).")
    path_template: str | None = Field(description="The folders of `layout` `template`, ending with '/'; else null.")
    include_events: list[str] = Field(description="Only events with these names (or `*` patterns) are written; "
                                                  "empty: all.")
    exclude_events: list[str] = Field(description="Events with these names (or `*` patterns) are left out.")
    drop_properties: list[str] = Field(description="Dotted paths of fields removed from every record before it "
                                                   "leaves, such as `properties.$email`.")
    access_tier: Literal["hot", "cool", "cold"] | None = Field(
        description="The access tier set on every file and manifest; null: the account's default.")
    auth: DestinationAuthView
    paused: PausedView | None = Field(
        description="null: exports run. Set: paused, automatically or by an operator; PUT new credentials or "
                    "POST .../resume to resume.")
    alerts: AlertsView | None = Field(description="null: alerts go to ALERT_WEBHOOK_URL only, if set.")
    warnings: list[str] = Field(
        description="What needs attention soon, in words: a SAS token expiring within 7 days or never, "
                    "missing delete permission.")
    created_at: datetime
    updated_at: datetime


class DestinationList(BaseModel):
    """A page of destinations, in id order."""

    destinations: list[DestinationView]
    next: str | None = Field(description=NEXT_PAGE)


class ProbeChecks(BaseModel):
    write: bool = Field(description="The probe blob was written.")
    read: bool = Field(description="It was read back, unchanged.")
    delete: bool = Field(description="It was deleted (false: the credentials cannot delete; it was left).")


class ProbeResult(BaseModel):
    """The destination's credentials proven: a probe blob written, read back and, where allowed, deleted."""

    ok: bool = Field(description="Always true: a failed probe answers an error instead.")
    destination_id: str
    probe_blob: str = Field(description="The probe blob's name in the container: `{prefix}_export_probe.txt`.")
    checks: ProbeChecks
    warnings: list[str]


class StatusCounts(BaseModel):
    """The destination's batches by state."""

    pending: int = Field(description="Accepted and not exported yet (those backing off after an error included).")
    retrying: int = Field(description="Of the pending, those waiting out a back-off after a failed attempt.")
    running: int = Field(description="Being exported right now.")
    failed: int = Field(description="Failed and waiting for a retry or new credentials (not those whose records "
                                    "were already deleted after FAILED_RETENTION_DAYS).")
    landed_last_24h: int = Field(description="Landed in the current UTC hour and the 23 before it.")


class OldestPending(BaseModel):
    """The batch that has waited longest and has not landed yet."""

    batch_id: str
    state: Literal["pending", "running"]
    accepted_at: datetime = Field(description="When it was accepted (answered 202).")
    age_seconds: float = Field(description="How long ago that was.")


class LastLanded(BaseModel):
    """The batch that landed last."""

    at: datetime
    batch_id: str
    records: int
    run_id: str | None = Field(description="The coalesced run it landed in; null if it landed on its own.")
    age_seconds: float = Field(description="How long ago it landed.")


class StatusError(BaseModel):
    """The latest attempt that did not land, as the batch's status gives it."""

    at: datetime
    batch_id: str
    code: str = Field(description="A stable code, such as `sas_expired` or `container_not_found`.")
    message: str = Field(description="What went wrong and what to do, in words.")
    attempt: int = Field(description="Which attempt (since the batch's last retry) failed.")
    will_retry: bool = Field(description="true: the batch backs off and is tried again by itself; false: it "
                                         "failed and waits for a retry or new credentials.")
    run_id: str | None = Field(None, description="The coalesced run it failed in; null if exported on its own.")


class LandedHour(BaseModel):
    hour: datetime = Field(description="The start of the UTC hour.")
    batches: int
    records: int


class AlertDeliveryView(BaseModel):
    """How sending an alert to one of its targets went."""

    state: Literal["pending", "delivered", "failed"] = Field(
        description="`pending`: tried again at `next_attempt_at`; `failed`: given up after 8 attempts.")
    attempts: int
    origin: str | None = Field(description="The scheme, host and port it was sent to (never the whole URL).")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    status_code: int | None = Field(description="The receiver's answer to the last attempt, if it answered.")
    last_error: str | None = Field(description="Why the last attempt failed, in words.")


class AlertView(BaseModel):
    """An alert the destination raised (one per kind and UTC day at most) and its delivery."""

    alert_id: str = Field(description="The `webhook-id` it is sent with, the same on every retry.")
    kind: Literal["batch_failed", "paused", "sas_expiring", "sas_expired", "recovered"]
    day: str = Field(description="The UTC day (YYYY-MM-DD) of the condition.")
    occurred_at: datetime
    state: Literal["pending", "delivered", "failed", "no_target"] = Field(
        description="`no_target`: neither ALERT_WEBHOOK_URL nor the destination's webhook was set when it was due.")
    details: dict[str, Any] = Field(description="The facts the alert's text says (the `data` of its payload).")
    next_attempt_at: datetime | None = Field(description="While pending: when it is tried next.")
    deliveries: dict[str, AlertDeliveryView] = Field(
        description="By target: `app` (ALERT_WEBHOOK_URL) and `destination` (its alerts.webhook_url).")


class DestinationStatus(BaseModel):
    """How current a destination is, read from a few markers and one small document (never every batch)."""

    destination_id: str
    up_to_date: bool = Field(
        description="true when it is not paused, no batch failed and waits for a retry, and no batch accepted more "
                    "than `threshold_seconds` ago is still pending or running.")
    reasons: list[str] = Field(description="Why it is not up to date, in words; empty when it is.")
    threshold_seconds: int = Field(
        description="The age past which a batch not landed makes the destination not up to date: as asked, or "
                    "900 (15 minutes) plus the destination's `coalesce.max_delay_seconds`.")
    checked_at: datetime
    counts: StatusCounts
    records_landed_last_24h: int = Field(description="Records in the batches of `counts.landed_last_24h`.")
    oldest_pending: OldestPending | None = Field(description="null when every batch has landed or failed.")
    last_landed: LastLanded | None = Field(description="null until a batch lands.")
    last_error: StatusError | None = Field(
        description="The latest error of any attempt, even if a later one landed (compare `at` with "
                    "`last_landed.at`); null if none.")
    landed_by_hour: list[LandedHour] = Field(description="The last 48 UTC hours, oldest first, the current one last.")
    paused: PausedView | None = Field(description="Set while the destination is paused (then it is not up to date).")
    consecutive_failed_runs: int = Field(
        description="Export runs that failed since its last landing or resume (a coalesced run counts once).")
    auto_pause_after: int = Field(
        description="AUTO_PAUSE_AFTER: this many consecutive failed runs pause it (0: never).")
    alerts: list[AlertView] = Field(description="Its latest alerts (up to 10, of the last 7 days), newest first.")


# --- Batches ------------------------------------------------------------------------------------------------


class BatchAccepted(BaseModel):
    """A batch durably staged: it lands at the next export pass."""

    batch_id: str
    records: int = Field(description="How many records the batch holds.")
    state: StateName = Field(description="`pending` when new; the batch's current state when replayed.")
    status_url: str = Field(description="Where its status is: GET it (the Location header says the same).")


class LandedFile(BaseModel):
    """A data file the batch wrote into the destination container."""

    name: str = Field(description="The blob's name in the destination container.")
    records: int
    bytes: int
    md5: str = Field(description="MD5 of the blob's content, in hex.")
    content_md5: str = Field(description="The same MD5 in base64, as the blob's Content-MD5 property holds it.")
    partition: str = Field(
        description="`date=YYYY-MM-DD/hour=HH` for events; `date=YYYY-MM-DD`, the export date, for profiles.")


class LastError(BaseModel):
    """Why the latest attempt did not land."""

    code: str = Field(description="A stable code, such as `container_not_found` or `authentication_failed`.")
    message: str = Field(description="What went wrong and what to do, in words.")
    at: datetime
    attempt: int = Field(description="Which attempt (since the last retry) failed.")


class BatchStatus(BaseModel):
    """A batch's state, counts, timestamps, the files it landed and its last error."""

    batch_id: str
    state: StateName
    type: RecordType
    destination_id: str
    records: int
    bytes: int = Field(description="The staged size of its records.")
    output_bytes: int = Field(description="What it wrote into the destination.")
    attempts: int = Field(description="Attempts since the last retry (the attempt budget counts these).")
    total_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = Field(description="When its latest attempt started.")
    finished_at: datetime | None = Field(description="When it landed or failed.")
    next_attempt_at: datetime | None = Field(description="While pending: when it is due.")
    blobs: list[LandedFile] = Field(description="The data files it landed (empty until it lands).")
    manifest: str | None = Field(description="Its manifest blob in the destination, once landed.")
    run_id: str | None = Field(description="The coalesced run it is exported in (its manifest names the run); "
                                           "null for a batch exported on its own.")
    discarded_at: datetime | None = Field(
        description="When an operator discarded the failed batch (POST .../discard): it no longer waits for a "
                    "retry or new credentials; a retry still exports it. null otherwise.")
    last_error: LastError | None
    notes: list[str]


class BatchListItem(BaseModel):
    batch_id: str
    state: StateName
    type: RecordType
    destination_id: str
    created_at: datetime
    status_url: str


class BatchList(BaseModel):
    """A page of batches, newest first (by creation time)."""

    batches: list[BatchListItem]
    next: str | None = Field(description=NEXT_PAGE)


# --- Export passes --------------------------------------------------------------------------------------------


class PassOutcome(BaseModel):
    batch_id: str
    outcome: Literal["landed", "failed", "retried", "skipped"]


class PassSummary(BaseModel):
    """What one export pass did."""

    landed: int
    failed: int
    retried: int = Field(description="Failed this time; due again after a backoff.")
    skipped: int = Field(
        description="Held by another worker, not due yet, or left for the next pass when the time budget ran out.")
    duration_seconds: float
    batches: list[PassOutcome]


# --- The request body of PUT /api/destinations/{id} ------------------------------------------------------------


class PauseIn(BaseModel):
    """The optional body of POST /api/destinations/{id}/pause."""

    reason: str | None = Field(None, max_length=500,
                               description="Why, in words, shown by the destination and its status (1-500 "
                                           "printable characters); absent: 'paused by an operator'.")


# Public words for DestinationIn and its auth types (their docstrings are for the code's readers). A name
# here that the schema no longer has fails the document's generation.
REQUEST_WORDS: dict[str, dict[str, str]] = {
    "DestinationIn": {
        "": "A destination: where batches land (an account or an endpoint, a container, a prefix), in which "
            "format, and how the app authenticates.",
        "account_name": "The storage account: the endpoint is then https://{account_name}.blob.core.windows.net. "
                        "Give this or `endpoint`.",
        "endpoint": "The account's blob endpoint (a custom https:// domain), without the container. Give this or "
                    "`account_name` (or neither, with a connection string).",
        "container": "The container batches land in: 3-63 lowercase letters, digits and single hyphens.",
        "prefix": "Prepended to every blob name (a '/' is added at its end).",
        "format": "jsonl: one JSON record a line; csv: one column a flattened key; parquet: a columnar file "
                  "(see `parquet_columns`) that Spark, DuckDB, pandas, Synapse and Fabric read.",
        "compression": "jsonl and csv: gzip (the default), zstd or none, of the whole file. parquet: zstd (its "
                       "default), snappy, gzip or none, inside the file.",
        "auth": "How the app authenticates: one of the four types, chosen by `type`.",
        "partition": "Events land under date=YYYY-MM-DD/hour=HH/ (`hour`, the default) or date=YYYY-MM-DD/ "
                     "(`day`: fewer, larger files, as for a backfill).",
        "coalesce": "Export batches due together as one run (one file per partition, one manifest); absent or "
                    "null: every batch on its own.",
        "parquet_columns": "For parquet only. typed (the default): the core columns, then a column for each "
                           "flattened field, its type fixed for the destination when first seen. json: the core "
                           "columns and the record's JSON text in one `properties` column.",
        "layout": "The folders files land in: hive (the default: {type}/date=YYYY-MM-DD/hour=HH/), dated "
                  "({type}/YYYY/MM/DD/HH/, as Mixpanel's) or template (`path_template`; implied when one is given).",
        "path_template": "Folders only, with {type}, {date}, {year}, {month}, {day}, {hour} and {event} (which also "
                         "splits files by event name); the file name is appended. It must name the date ({date}, "
                         "or {year}, {month} and {day}), and {hour} when `partition` is hour; no '..', no empty "
                         "folder. Profiles leave out the folders holding {hour} or {event}.",
        "include_events": "Only events whose names match one of these are written: exact names, or patterns where "
                          "`*` is any characters. Absent or empty: every event.",
        "exclude_events": "Events whose names match one of these (exact names or `*` patterns) are not written.",
        "drop_properties": "Fields removed from every record before it is written, by dotted path as columns are "
                           "named (properties.$email, profileData.Phone); a path naming an object removes it whole.",
        "access_tier": "hot, cool or cold: the access tier set on every file and manifest as it is written "
                       "(exports are written once and read rarely). Absent: the account's default tier.",
        "alerts": "The destination's own alert webhook, besides ALERT_WEBHOOK_URL; absent or null: none.",
    },
    "AlertsIn": {
        "": "Where this destination's alerts are also POSTed, signed (Standard Webhooks). Give exactly one of "
            "`webhook_url` and `webhook_secret_name`.",
        "webhook_url": "An https:// URL on a public host, such as a Slack or Teams incoming webhook (never shown "
                       "again: it is a credential, kept in the app's secret store; only its origin is shown).",
        "webhook_secret_name": "Keeps the current webhook: the `alerts.webhook_secret_name` GET shows.",
    },
    "SasAuth": {
        "": "A SAS token (container or account SAS) with read and write permission; delete is recommended. "
            "Give exactly one of `sas_token` and `secret_name`.",
        "sas_token": "The token (never shown again: the app stores it in its secret store).",
        "secret_name": "The name of a secret already in the app's secret store that holds the token.",
    },
    "ServicePrincipalAuth": {
        "": "An Entra ID app registration with a role on the account (Storage Blob Data Contributor). Give "
            "exactly one of `client_secret` and `secret_name`.",
        "tenant_id": "The tenant's GUID.",
        "client_id": "The app registration's client id (a GUID).",
        "client_secret": "Its client secret (never shown again: the app stores it in its secret store).",
        "secret_name": "The name of a secret already in the app's secret store that holds the client secret.",
    },
    "ManagedIdentityAuth": {
        "": "The function app's managed identity, with a role on the account (the account must be one the "
            "operator allowed).",
        "client_id": "A user-assigned identity's client id; leave out for the system-assigned identity.",
    },
    "ConnectionStringAuth": {
        "": "A storage connection string. Give exactly one of `connection_string` and `secret_name`.",
        "connection_string": "The connection string (never shown again: the app stores it in its secret store).",
        "secret_name": "The name of a secret already in the app's secret store that holds the connection string.",
    },
}

COMPONENTS = "#/components/schemas/"


def request_schemas() -> dict[str, dict[str, Any]]:
    """DestinationIn and its auth types as document components, referring to each other under
    #/components/schemas/ (the `auth` union's discriminator mapping included), with the public words above."""
    schema = DestinationIn.model_json_schema(ref_template=COMPONENTS + "{model}")
    found: dict[str, dict[str, Any]] = {**schema.pop("$defs", {}), "DestinationIn": schema,
                                        "PauseIn": PauseIn.model_json_schema(ref_template=COMPONENTS + "{model}")}
    for name, words in REQUEST_WORDS.items():
        model = found[name]
        model.pop("description", None)
        for field, text in words.items():
            (model["properties"][field] if field else model)["description"] = text
    return found


# --- Parameters ------------------------------------------------------------------------------------------------

# Words (and bounds the routes check themselves) for the parameters FastAPI documents from the route signatures,
# by where they are and their name: `description` is set, `schema` is merged into the generated one.
PARAMETER_WORDS: dict[tuple[str, str], dict[str, Any]] = {
    ("path", "destination_id"): {
        "description": "The destination's id: 3-63 lowercase letters, digits and '-'.",
        "schema": {"pattern": "^[a-z0-9-]{3,63}$"}},
    ("path", "batch_id"): {"description": "The batch's id, as posting it answered."},
    ("query", "verify"): {
        "description": "false: save without first proving the credentials (a container not created yet, a "
                       "network the app cannot reach yet); POST .../test proves them later."},
    ("query", "threshold_seconds"): {
        "description": "The age, in seconds, past which a batch not landed yet makes the destination not up to "
                       "date (1 to 604800; default 900 plus the destination's coalescing delay).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 604800}},
    ("query", "force"): {
        "description": "true: delete even with batches not landed yet; they fail with the reason "
                       "'destination deleted' and their staged records are deleted."},
    ("query", "limit"): {"description": f"Items a page, 1 to {MAX_PAGE}.",
                         "schema": {"minimum": 1, "maximum": MAX_PAGE}},
    ("query", "next"): {"description": "The `next` of the page before, unchanged (with the same filters); "
                                       "leave it out for the first page."},
    ("query", "state"): {"description": "Only batches in this state.",
                         "schema": {"type": "string", "enum": list(STATES)}},
    ("query", "destination_id"): {"description": "Only this destination's batches."},
    ("query", "type"): {"description": "What the records are: events (name and time) or profiles (identity)."},
    ("header", "Idempotency-Key"): {
        "description": "Makes a retried POST answer the batch the first one made (with `Idempotent-Replayed: "
                       "true`) instead of making another; the same key with another body is a 409."},
}


def describe_parameter(parameter: dict[str, Any]) -> None:
    """Add PARAMETER_WORDS to one of the document's parameters."""
    words = PARAMETER_WORDS.get((parameter["in"], parameter["name"]))
    if words is None:
        return
    parameter["description"] = words["description"]
    schema = parameter.setdefault("schema", {})
    schema.update(words.get("schema", {}))
    if "type" in words.get("schema", {}):  # a type of its own: no longer "or null"
        schema.pop("anyOf", None)
