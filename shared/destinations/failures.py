"""Turn a failure talking to a destination into plain words a customer can act on (by exception type).

A destination's answer is not trusted text: its reason phrase and error-code header are the remote server's
choice. Messages quote only the HTTP status with its standard phrase and, when it is one Azure Storage
defines, the error code's value (never an enum's repr).
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import StorageErrorCode
from azure.storage.blob._generated.models import StorageErrorCode as GeneratedErrorCode

from shared.destinations.clients import ForeignAudienceRefused
from shared.destinations.record import DestinationRecord
from shared.destinations.sas import expired_message
from shared.destinations.token_endpoints import TOKEN_AUTH_TYPES
from shared.errors import DestinationProblem
from shared.formats.exact_json import RecordError
from shared.secrets.store import (
    SecretAccessDeniedError,
    SecretNotFoundError,
    SecretStoreError,
    SecretStoreUnavailableError,
)

RETRYABLE_STATUSES = {408, 429, 500, 502, 503, 504}
# The public enum lacks some codes the service sends (AuthorizationPermissionMismatch); the generated one has them.
_STORAGE_ERROR_CODES = frozenset(code.value for enum in (StorageErrorCode, GeneratedErrorCode) for code in enum)


def storage_error_code(exc: BaseException) -> str:
    """The Azure Storage error code of `exc` when it is one Azure defines, else ''."""
    code = getattr(exc, "error_code", None)
    value = getattr(code, "value", code)
    return value if isinstance(value, str) and value in _STORAGE_ERROR_CODES else ""


def status_text(status: int | None) -> str:
    """`403 (Forbidden)`: the status with its standard phrase, not the phrase the server sent."""
    if status is None:
        return "no status"
    try:
        return f"{status} ({HTTPStatus(status).phrase})"
    except ValueError:
        return str(status)


def describe_failure(exc: BaseException, record: DestinationRecord, now: datetime) -> DestinationProblem:
    """Classify `exc` (raised while exporting to or probing `record`) into a DestinationProblem."""
    if isinstance(exc, DestinationProblem):
        return exc
    if isinstance(exc, SecretStoreError):
        return _secret_problem(exc)
    if isinstance(exc, RecordError):
        # The data, not the destination: retrying cannot help (e.g. two fields flatten to one CSV column).
        return DestinationProblem(
            f"a record cannot be written as {record.format.upper()}: {exc}; fix it at the "
            "source and post it again, or set the destination's format to jsonl and retry the batch",
            code="record_not_writable",
        )
    if isinstance(exc, ValueError) and (over_http := _token_over_http(record)) is not None:
        return over_http
    if isinstance(exc, ForeignAudienceRefused):
        return DestinationProblem(
            f"the endpoint {record.account_url or ''} asked for a token for another service, and the app "
            "sends destinations Azure Storage tokens only: check that the endpoint is your storage account's "
            "blob endpoint",
            code="authentication_failed",
        )
    code = storage_error_code(exc)
    if isinstance(exc, ClientAuthenticationError):
        return _auth_problem(record, now, error_code=code)
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if status is not None and 300 <= status < 400:
        return DestinationProblem(
            f"the endpoint {record.account_url or ''} answered with a redirect, {status_text(status)}; "
            "the app does not follow redirects from a destination: give the storage account's own blob endpoint",
            code="destination_redirected",
        )
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if code in {"", "ContainerNotFound"}:
            return DestinationProblem(
                f"the {record.where()} does not exist: create it, or fix the destination's container name",
                code="container_not_found",
            )
        return DestinationProblem(f"the destination answered 404 ({code})", code="not_found", retryable=True)
    if status in {401, 403}:
        return _auth_problem(record, now, error_code=code)
    if status in RETRYABLE_STATUSES:
        return DestinationProblem(
            # No "will be retried" here: the same words end up in a failed batch's "gave up after N attempts".
            f"the destination storage answered {status_text(status)} and kept doing so "
            "after retries: it is throttling requests or briefly unavailable",
            code="destination_busy",
            retryable=True,
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError | TimeoutError | ConnectionError):
        return DestinationProblem(
            f"the endpoint {record.account_url or ''} is unreachable "
            f"({type(exc).__name__}); check the account name or endpoint, and retry",
            code="endpoint_unreachable",
            retryable=True,
        )
    if isinstance(exc, HttpResponseError):
        with_code = f", error code {code}" if code else ""
        return DestinationProblem(
            f"the destination storage refused the request: {status_text(status)}{with_code}",
            code="destination_error",
            retryable=bool(status and status >= 500),
        )
    return DestinationProblem(f"unexpected error: {type(exc).__name__}", code="internal_error", retryable=True)


def _auth_problem(record: DestinationRecord, now: datetime, error_code: str = "") -> DestinationProblem:
    auth = record.auth
    kind = auth.type
    if kind == "sas":
        info = auth.sas.info() if auth.sas else None
        expired = expired_message(info, now) if info else None
        if expired is not None:
            return DestinationProblem(expired, code="sas_expired")
        if info and not info.can_write:
            return DestinationProblem(
                "the SAS token lacks write permission; generate one with read and write", code="sas_permission"
            )
        if error_code == "AuthorizationPermissionMismatch" or error_code == "AuthorizationResourceTypeMismatch":
            return DestinationProblem(
                "the SAS token does not allow this operation on the container; generate a container SAS "
                "with read and write", code="sas_permission",
            )
        return DestinationProblem(_sas_refused(record), code="authentication_failed")
    if kind == "service_principal":
        if error_code.startswith("Authorization"):
            return DestinationProblem(
                f"the service principal {auth.client_id} lacks the 'Storage Blob Data Contributor' role on the "
                f"{record.where()}; grant it and retry",
                code="permission_denied",
            )
        return DestinationProblem(
            f"authentication failed for service principal {auth.client_id} in tenant {auth.tenant_id}: "
            "check the client secret (and its expiry) and update the destination",
            code="authentication_failed",
        )
    if kind == "managed_identity":
        return DestinationProblem(
            "the function app's managed identity could not authenticate or lacks the 'Storage Blob Data "
            f"Contributor' role on the {record.where()}",
            code="authentication_failed",
        )
    return DestinationProblem(
        "authentication failed: the storage account rejected the connection string's key "
        f"({error_code or 'forbidden'})",
        code="authentication_failed",
    )


def _sas_refused(record: DestinationRecord) -> str:
    """Why a storage account refuses a SAS token it cannot tell us more about, most likely cause first. A container
    SAS pasted with another container's name is the usual mistake, then one made on another account (a test
    account's); last, one that no longer holds (expired under a stored access policy, whose expiry the token does
    not carry; revoked by a key rotation or a policy change) or was copied incompletely. Azure's error code
    (AuthenticationFailed, AuthorizationFailure) does not tell these apart, and is not quoted."""
    container = record.container
    account = f"account '{record.account_name}'" if record.account_name else f"the account at {record.account_url}"
    return (
        "authentication failed: the storage account refused the SAS token. The likely causes, in order: "
        f"1) it was made for another container than '{container}' (a container SAS is valid for one container "
        f"only); 2) it was made for another storage account than {account}; 3) it has expired or was revoked "
        "(the account key that signed it was rotated, or its stored access policy changed or expired), or its "
        "signature is wrong (the token was copied incompletely). Generate a container SAS with read and write "
        f"for container '{container}' on {account}, and save the destination with it"
    )


def _token_over_http(record: DestinationRecord) -> DestinationProblem | None:
    """A destination saved before token auth was refused over http (the storage SDK then raises ValueError for
    every export): said once, in words, and not retried; saving it again with its https endpoint fixes it."""
    if record.auth.type not in TOKEN_AUTH_TYPES or urlsplit(record.account_url or "").scheme != "http":
        return None
    return DestinationProblem(
        f"the destination's endpoint {record.account_url} is plain http, and bearer tokens ({record.auth.type}) "
        "are only sent over HTTPS: update the destination with its https endpoint (for a local emulator, use a "
        "SAS token or a connection string)",
        code="endpoint_not_https",
    )


def _secret_problem(exc: SecretStoreError) -> DestinationProblem:
    if isinstance(exc, SecretNotFoundError):
        return DestinationProblem(str(exc), code="secret_not_found")
    if isinstance(exc, SecretAccessDeniedError):
        return DestinationProblem(str(exc), code="secret_access_denied", retryable=True)
    if isinstance(exc, SecretStoreUnavailableError):
        return DestinationProblem(str(exc), code="secret_store_unavailable", retryable=True)
    return DestinationProblem(str(exc), code="secret_store_error", retryable=True)


def is_auth_failure(exc: BaseException) -> bool:
    """A 401/403 that a rotated secret could fix (worth one retry with a fresh secret)."""
    if isinstance(exc, HttpResponseError) and exc.status_code in {401, 403}:
        return True
    return isinstance(exc, ClientAuthenticationError)
