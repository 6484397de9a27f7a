"""Open a destination with its current secret; on a 401/403 re-read a possibly rotated secret once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.storage.blob import ContainerClient

from shared.destinations.clients import ClientFactory
from shared.destinations.failures import describe_failure, is_auth_failure
from shared.destinations.probe import probe_destination
from shared.destinations.record import DestinationRecord
from shared.errors import DestinationProblem
from shared.logging_setup import log_event
from shared.secrets.cache import CachedSecrets

log = logging.getLogger(__name__)
T = TypeVar("T")


def secret_of(record: DestinationRecord, secrets: CachedSecrets) -> str | None:
    return secrets.get(record.secret_name) if record.secret_name else None


def open_container(record: DestinationRecord, secrets: CachedSecrets, clients: ClientFactory) -> ContainerClient:
    return clients.container_client(record, secret_of(record, secrets))


def with_destination(
    record: DestinationRecord,
    secrets: CachedSecrets,
    clients: ClientFactory,
    action: Callable[[ContainerClient], T],
) -> T:
    """Run `action` against the destination; after an auth failure retry once with a freshly read secret."""
    try:
        return action(open_container(record, secrets, clients))
    except Exception as exc:
        if not is_auth_failure(exc) or not record.secret_name:
            raise
        log_event(log, "auth failure; re-reading the secret once", destination_id=record.id)
        secrets.invalidate(record.secret_name)
        clients.forget_secret(record)
        return action(open_container(record, secrets, clients))


def check_destination(
    record: DestinationRecord, secrets: CachedSecrets, clients: ClientFactory, now: datetime | None = None
) -> dict[str, Any]:
    """The saved destination's probe (POST .../test)."""
    moment = now or datetime.now(UTC)
    try:
        return with_destination(record, secrets, clients, lambda c: probe_destination(c, record, moment))
    except Exception as exc:
        raise describe_failure(exc, record, moment) from None


def verify_candidate(record: DestinationRecord, secret: str | None, clients: ClientFactory) -> dict[str, Any]:
    """The probe of a destination about to be saved, with the secret it is about to be saved with."""
    moment = datetime.now(UTC)
    try:
        return probe_destination(clients.candidate_client(record, secret), record, moment)
    except Exception as exc:
        problem = describe_failure(exc, record, moment)
        raise DestinationProblem(
            f"the destination was not saved: {problem.message} (to save it without this check, "
            "PUT it again with ?verify=false)", code=problem.code, retryable=problem.retryable, status=problem.status,
        ) from None
