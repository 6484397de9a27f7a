"""The destination test: write, read back and (where allowed) delete a small probe blob."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.destinations.failures import describe_failure
from shared.destinations.record import DestinationRecord
from shared.logging_setup import log_event

log = logging.getLogger(__name__)


def probe_blob_name(prefix: str) -> str:
    # One fixed name per prefix: a probe that cannot delete leaves at most one small blob behind.
    return f"{prefix}_export_probe.txt"


def _write_and_read_back(container: ContainerClient, name: str, payload: bytes, marker: bytes) -> None:
    """Write the probe blob and read it back. Two probes of one destination (two saves at once) share the
    name: reading the other's payload proves the same, and if it deleted the blob in between, write again."""
    for _ in range(3):
        container.upload_blob(name, payload, overwrite=True)
        try:
            body = container.download_blob(name).readall()
        except ResourceNotFoundError:
            continue
        if not body.startswith(marker):
            raise RuntimeError("the probe blob read back differs from what was written")
        return
    raise RuntimeError("the probe blob kept disappearing between its write and its read")


def probe_destination(container: ContainerClient, record: DestinationRecord, now: datetime) -> dict[str, Any]:
    """Raise DestinationProblem with plain words, or return what was checked."""
    name = probe_blob_name(record.prefix)
    marker = f"export probe for destination {record.id} at ".encode()
    payload = marker + f"{now.isoformat()}\n".encode()
    checks: dict[str, Any] = {}
    try:
        _write_and_read_back(container, name, payload, marker)
        checks.update(write=True, read=True)
    except Exception as exc:
        raise describe_failure(exc, record, now) from None
    warnings = []
    try:
        container.delete_blob(name)
        checks["delete"] = True
    except ResourceNotFoundError:
        checks["delete"] = True
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise describe_failure(exc, record, now) from None
        checks["delete"] = False
        warnings.append(
            f"the credentials cannot delete blobs, so the probe blob '{name}' was left in place; "
            "exports still work, but a re-exported batch cannot remove parts it no longer writes"
        )
    log_event(log, "destination probe passed", destination_id=record.id, checks=checks)
    return {"ok": True, "destination_id": record.id, "probe_blob": name, "checks": checks, "warnings": warnings}
