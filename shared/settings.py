"""App settings: read once from the environment (Functions app settings), validated at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

AZURITE_CONNECTION_STRING = "UseDevelopmentStorage=true"
HOST_STORAGE = "AzureWebJobsStorage"  # the Functions host's storage setting (and its identity-based __ forms)
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_SUFFIX = re.compile(r"^(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?){2,}$")


def _comma_list(value: object) -> object:
    """`a, b,,c` -> ("a", "b", "c"): app settings are strings; empty items are ignored."""
    if isinstance(value, str):
        return tuple(item.strip().lower() for item in value.split(",") if item.strip())
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]

# Set by the platform on every instance in Azure, never by the app's settings: WEBSITE_INSTANCE_ID on the plans
# that run on App Service (Premium, Dedicated), WEBSITE_SKU on every plan. The Flex Consumption plan sets no
# WEBSITE_INSTANCE_ID (azure-functions-host tells Flex by WEBSITE_SKU=FlexConsumption and App Service by
# WEBSITE_INSTANCE_ID), so both are read.
AZURE_INSTANCE_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SKU")


def azure_instance_marker(environ: Mapping[str, str]) -> str | None:
    """The platform variable that says the process runs in Azure, or None (locally, in tests, under Core Tools)."""
    return next((name for name in AZURE_INSTANCE_MARKERS if environ.get(name, "").strip()), None)


class SettingsError(RuntimeError):
    """A setting is missing or wrong; the message names it."""


class Settings(BaseSettings):
    """Every app setting the app reads. Names are the environment variable names."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    control_storage_connection: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CONTROL_STORAGE_CONNECTION", "AzureWebJobsStorage"),
        description="Connection string of the control storage account (defaults to AzureWebJobsStorage).",
    )
    control_storage_account_url: str | None = Field(
        default=None,
        # The Functions host's own identity-based form of AzureWebJobsStorage is honoured too.
        validation_alias=AliasChoices("CONTROL_STORAGE_ACCOUNT_URL", "AzureWebJobsStorage__blobServiceUri"),
        description="Blob endpoint of control storage when it is reached with the app's managed identity.",
    )
    control_queue_account_url: str | None = Field(
        default=None,
        # The identity-based form the Functions host's queue trigger reads (issue 14).
        validation_alias=AliasChoices("CONTROL_QUEUE_ACCOUNT_URL", "AzureWebJobsStorage__queueServiceUri"),
        description="Queue endpoint of control storage when it is reached with the app's managed identity.",
    )
    export_queue_name: str = Field(
        default="export-units",
        validation_alias=AliasChoices("EXPORT_QUEUE_NAME"),
        # Its poison queue's name adds 7 characters ('-poison'): 56 leaves room within storage's 63.
        pattern=r"^[a-z0-9][a-z0-9-]{1,54}[a-z0-9]$",
        description="The queue in control storage that carries export units to the queue-triggered function; "
        "its poison messages go to '<name>-poison'.",
    )
    queue_grace_seconds: float = Field(
        default=120, ge=0, le=86400, validation_alias=AliasChoices("QUEUE_GRACE_SECONDS"),
        description="How long a due unit may wait for its queue message before the timer enqueues it again.",
    )
    control_container: str = Field(
        default="export-control",
        validation_alias=AliasChoices("CONTROL_CONTAINER"),
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
    )
    key_vault_url: str | None = Field(default=None, validation_alias=AliasChoices("KEY_VAULT_URL"))
    local_secrets_path: Path = Field(
        default=Path(".local/dev-secrets.json"), validation_alias=AliasChoices("LOCAL_SECRETS_PATH")
    )
    export_schedule: str = Field(default="0 */5 * * * *", validation_alias=AliasChoices("EXPORT_SCHEDULE"))
    secret_cache_ttl_seconds: float = Field(
        default=300, ge=0, le=86400, validation_alias=AliasChoices("SECRET_CACHE_TTL_SECONDS")
    )
    max_request_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, validation_alias=AliasChoices("MAX_REQUEST_BYTES")
    )
    max_concurrent_intake: int = Field(
        default=4, ge=1, le=64, validation_alias=AliasChoices("MAX_CONCURRENT_INTAKE"),
        description="Intake requests one instance reads and parses at once; the excess gets 503 with Retry-After.",
    )
    max_record_containers: int = Field(
        default=10_000, ge=16, le=1_000_000, validation_alias=AliasChoices("MAX_RECORD_CONTAINERS"),
        description="Objects and arrays one record may hold (itself included); a record with more is refused.",
    )
    max_csv_columns: int = Field(
        default=2000, ge=1, le=100_000, validation_alias=AliasChoices("MAX_CSV_COLUMNS"),
        description="Columns a partition of a CSV destination may have; a batch with more is refused at intake.",
    )
    part_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, validation_alias=AliasChoices("PART_MAX_BYTES")
    )
    block_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024, validation_alias=AliasChoices("BLOCK_BYTES")
    )
    upload_concurrency: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("UPLOAD_CONCURRENCY"))
    export_concurrency: int = Field(default=2, ge=1, le=16, validation_alias=AliasChoices("EXPORT_CONCURRENCY"))
    file_concurrency: int = Field(
        default=8, ge=1, le=64, validation_alias=AliasChoices("FILE_CONCURRENCY"),
        description="Small files (at most one block of staged records) one export writes at once.",
    )
    gzip_level: int = Field(default=6, ge=1, le=9, validation_alias=AliasChoices("GZIP_LEVEL"))
    pass_time_budget_seconds: float = Field(
        default=240, gt=0, validation_alias=AliasChoices("PASS_TIME_BUDGET_SECONDS")
    )
    # Azure's front end ends an HTTP request after 230 s whatever the function timeout: POST /api/exports/run
    # must answer well before, with the time an export already in hand may still take.
    run_now_budget_seconds: float = Field(
        default=150, gt=0, le=180, validation_alias=AliasChoices("RUN_NOW_BUDGET_SECONDS")
    )
    max_attempts: int = Field(default=8, ge=1, le=100, validation_alias=AliasChoices("MAX_ATTEMPTS"))
    staged_retention_hours: float = Field(
        default=168, ge=0, validation_alias=AliasChoices("STAGED_RETENTION_HOURS"),
        description="Hours a landed batch's staged records are kept (for a replay); 0 deletes them at landing.",
    )
    state_retention_days: float = Field(
        default=30, gt=0, validation_alias=AliasChoices("STATE_RETENTION_DAYS"),
        description="Days a finished batch's state is kept (landed, or failed with its staged records gone).",
    )
    failed_retention_days: float = Field(
        default=30, gt=0, validation_alias=AliasChoices("FAILED_RETENTION_DAYS"),
        description="Days a failed batch keeps its staged records for a retry; then they are deleted.",
    )
    retry_base_seconds: float = Field(default=30, ge=0, validation_alias=AliasChoices("RETRY_BASE_SECONDS"))
    retry_max_seconds: float = Field(default=3600, ge=0, validation_alias=AliasChoices("RETRY_MAX_SECONDS"))
    lease_seconds: int = Field(default=60, ge=15, le=60, validation_alias=AliasChoices("LEASE_SECONDS"))
    request_timeout_seconds: float = Field(
        default=60, gt=0, validation_alias=AliasChoices("REQUEST_TIMEOUT_SECONDS")
    )
    storage_retry_total: int = Field(default=5, ge=0, le=20, validation_alias=AliasChoices("STORAGE_RETRY_TOTAL"))
    storage_retry_backoff_seconds: float = Field(
        default=2, ge=0, le=60, validation_alias=AliasChoices("STORAGE_RETRY_BACKOFF_SECONDS")
    )
    allow_http_loopback: bool = Field(default=False, validation_alias=AliasChoices("ALLOW_HTTP_LOOPBACK"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    token_auth_endpoint_suffixes: CommaList = Field(
        default=(),
        validation_alias=AliasChoices("TOKEN_AUTH_ENDPOINT_SUFFIXES"),
        description="Extra blob endpoint host suffixes (such as .blob.core.contoso.example) to which the app "
        "sends Entra ID tokens, beside Azure Storage's own.",
    )
    managed_identity_accounts: CommaList = Field(
        default=(),
        validation_alias=AliasChoices("MANAGED_IDENTITY_ACCOUNTS"),
        description="Storage accounts a destination may reach with the app's own managed identity; "
        "empty refuses managed-identity destinations.",
    )
    customer_secret_prefix: str = Field(
        default="",
        validation_alias=AliasChoices("CUSTOMER_SECRET_PREFIX"),
        pattern=r"^[0-9A-Za-z-]{0,64}$",
        description="When set, a destination's secret_name must start with it.",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALERT_WEBHOOK_URL"),
        description="Where every destination's alerts are POSTed (issue 17); a Slack or Teams webhook URL is a "
        "credential, hence a secret. The endpoint rules (https, no private or loopback address) are applied "
        "where it is used (shared.alerts), beside a destination's own alerts.webhook_url.",
    )
    auto_pause_after: int = Field(
        default=3, ge=0, le=100, validation_alias=AliasChoices("AUTO_PAUSE_AFTER"),
        description="Consecutive failed export runs after which a destination is paused; 0 never pauses one.",
    )
    local_intake_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("LOCAL_INTAKE_KEY"))
    local_admin_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("LOCAL_ADMIN_KEY"))

    @field_validator("token_auth_endpoint_suffixes")
    @classmethod
    def _suffixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        suffixes = tuple(item if item.startswith(".") else f".{item}" for item in value)
        for suffix in suffixes:
            if not _SUFFIX.match(suffix):
                raise ValueError("each suffix must be a DNS name such as .blob.core.contoso.example")
        return suffixes

    @field_validator("managed_identity_accounts")
    @classmethod
    def _accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for account in value:
            if not _ACCOUNT.match(account):
                raise ValueError("each account must be a storage account name (3-24 lowercase letters and digits)")
        return value

    @field_validator("alert_webhook_url", mode="before")
    @classmethod
    def _blank_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_is_a_url(cls, value: SecretStr | None) -> SecretStr | None:
        """The shape only (the message never quotes the value): the endpoint rules need the destinations' checks."""
        if value is not None and not value.get_secret_value().strip().lower().startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL such as https://hooks.slack.com/services/...")
        return value

    @field_validator("local_intake_key", "local_admin_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_vault_url")
    @classmethod
    def _vault_is_https(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL such as https://my-vault.vault.azure.net")
        return value.rstrip("/")

    @field_validator("control_container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("must not contain two hyphens in a row (Azure container naming rules)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @field_validator("export_queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("a queue name may not hold two hyphens in a row")
        return value

    @model_validator(mode="after")
    def _control_storage_given(self) -> Settings:
        if not (self.control_storage_connection or "").strip() and not self.control_storage_account_url:
            raise ValueError(
                "AzureWebJobsStorage (or CONTROL_STORAGE_CONNECTION) must be set to the control storage "
                "connection string, or CONTROL_STORAGE_ACCOUNT_URL (or AzureWebJobsStorage__blobServiceUri) to "
                "its blob endpoint for managed identity"
            )
        return self

    @model_validator(mode="after")
    def _nothing_local_in_azure(self) -> Settings:
        """In Azure, destination secrets go to Key Vault and destinations never reach http:// loopback: the local
        secret store and ALLOW_HTTP_LOOPBACK are for a developer's machine only."""
        marker = azure_instance_marker(os.environ)
        if marker is None:
            return self
        problems = []
        if self.key_vault_url is None:
            problems.append(f"KEY_VAULT_URL must be set when the app runs in Azure ({marker} is set): destination "
                            "secrets are kept in Key Vault there, never in the local development secret store")
        if self.allow_http_loopback:
            problems.append(f"ALLOW_HTTP_LOOPBACK must not be true when the app runs in Azure ({marker} is set): "
                            "it lets destinations use http:// loopback endpoints, for local tests only")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _export_queue_where_its_trigger_listens(self) -> Settings:
        """In Azure, a separate control storage account would take the export messages where the queue trigger
        (on AzureWebJobsStorage's account) never sees them: refused, naming both accounts (never a key)."""
        marker = azure_instance_marker(os.environ)
        separate = os.environ.get("CONTROL_STORAGE_CONNECTION")
        if marker is None or not separate:
            return self
        host = _account_of(os.environ.get(HOST_STORAGE, ""), os.environ.get(f"{HOST_STORAGE}__queueServiceUri", ""))
        control = _account_of(separate, "")
        if host and control and host != control:
            raise ValueError(
                f"CONTROL_STORAGE_CONNECTION must name the account of AzureWebJobsStorage when the app runs in Azure "
                f"({marker} is set): it names '{control}' and AzureWebJobsStorage '{host}', and the export queue is "
                "in control storage's account while its trigger listens on AzureWebJobsStorage's, so no export "
                "message would ever be seen; leave CONTROL_STORAGE_CONNECTION unset")
        return self

    @property
    def queue_connection_string(self) -> str | None:
        """Where the export queue is: control storage's account, which is AzureWebJobsStorage's, the account the
        queue trigger listens on, unless CONTROL_STORAGE_CONNECTION names another (the README says so)."""
        return self.control_storage_connection

    @property
    def uses_local_secret_store(self) -> bool:
        return self.key_vault_url is None


def _account_of(connection: str, service_uri: str) -> str | None:
    """The storage account a connection string (AccountName, or its blob endpoint's host) or, failing that, a
    service URI names, lower-cased; None when neither says. Only names: a key never leaves here."""
    pairs = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    pairs = {key.strip().lower(): value.strip() for key, value in pairs.items()}
    if pairs.get("accountname"):
        return pairs["accountname"].lower()
    url = pairs.get("blobendpoint") or service_uri
    host = urlparse(url).hostname if url else None
    return host.split(".", 1)[0].lower() if host else None


_ENV_NAMES = {
    name: (
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        if isinstance(field.validation_alias, AliasChoices)
        else name
    )
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raise SettingsError naming each bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            problems.append(f"{_ENV_NAMES.get(field, field)}: {err['msg']}")
        raise SettingsError("invalid app settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import)."""
    return load_settings()
