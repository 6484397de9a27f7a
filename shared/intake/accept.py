"""Webhook intake: check the request, decode its body (`shared.intake.body`), validate every record, stage the batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.control.batch_state import BatchState, RecordType
from shared.control.batches import NewBatch, StagedPart, new_batch_id, now_utc, stage_batch
from shared.control.store import ControlStore
from shared.errors import BadRequest, ValidationFailed
from shared.intake.body import body_kind, decode_body
from shared.intake.records import RecordsRejected, parse_batch

MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class IntakeRequest:
    destination_id: str
    record_type: str
    content_type: str | None
    content_encoding: str | None
    idempotency_key: str | None


def check_record_type(value: str | None) -> RecordType:
    if value == "events":
        return "events"
    if value == "profiles":
        return "profiles"
    raise ValidationFailed(
        "query parameter 'type' must be 'events' or 'profiles'",
        details=[{"field": "type", "message": "must be 'events' or 'profiles'"}],
    )


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(
            f"the Idempotency-Key header must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
            details=[{"field": "Idempotency-Key", "message": "invalid"}],
        )
    return key


def accept_batch(
    control: ControlStore, request: IntakeRequest, raw: bytes | bytearray, *, max_bytes: int,
    moment: datetime | None = None, csv_destination: bool = False, max_containers: int | None = None,
    max_csv_columns: int | None = None,
) -> tuple[BatchState, bool]:
    """Validate and stage; returns (state, created). Raises an AppError and stages nothing on bad input.

    ``max_containers`` (MAX_RECORD_CONTAINERS) bounds each record's objects and arrays; ``max_csv_columns``
    (MAX_CSV_COLUMNS) a partition's columns, for a CSV destination only.
    """
    record_type = check_record_type(request.record_type)
    kind = body_kind(request.content_type)
    key = check_idempotency_key(request.idempotency_key)
    body = decode_body(raw, request.content_encoding, max_bytes)
    try:
        parsed = parse_batch(body, kind, record_type, unique_columns=csv_destination, max_containers=max_containers,
                             max_columns=max_csv_columns if csv_destination else None)
    except RecordsRejected as exc:
        details = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
        raise BadRequest(exc.message, details=details, code="invalid_records") from None
    when = moment or now_utc()
    parts = [
        StagedPart(key=p.key, lines=p.lines, columns=sorted(p.columns))
        for p in sorted(parsed.partitions.values(), key=lambda p: p.key)
    ]
    return stage_batch(control, NewBatch(
        batch_id=new_batch_id(when, request.destination_id, key),
        destination_id=request.destination_id,
        record_type=record_type,
        parts=parts,
        records=parsed.record_count,
        body_sha256=hashlib.sha256(body).hexdigest(),
        moment=when,
    ))


def accepted_body(state: BatchState) -> dict[str, Any]:
    return {
        "batch_id": state.batch_id,
        "records": state.records,
        "state": state.state,
        "status_url": f"/api/batches/{state.batch_id}",
    }
