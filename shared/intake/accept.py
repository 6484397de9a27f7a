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
from shared.intake.body import GunzipStream, body_kind, is_gzip
from shared.intake.records import BodyReader, ParsedBatch, RecordsRejected

MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class IntakeRequest:
    destination_id: str
    record_type: str
    content_type: str | None
    content_encoding: str | None
    idempotency_key: str | None
    # The destination's generation at intake: a destination deleted and re-created meanwhile never exports it.
    destination_generation: str | None = None


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


class BodyIntake:
    """One posted batch as its body arrives: the request's headers checked at once (before any of the body is
    read), then ``feed`` each piece of the body as it comes (inflated within the limit, hashed, and NDJSON
    checked and staged a line at a time, so that the body itself is never held whole), then ``finish``.
    A JSON array is gathered and read at ``finish``, an element at a time."""

    def __init__(self, request: IntakeRequest, *, max_bytes: int, csv_destination: bool = False,
                 max_containers: int | None = None, max_csv_columns: int | None = None) -> None:
        self.request = request
        self.record_type = check_record_type(request.record_type)
        self.kind = body_kind(request.content_type)
        self.key = check_idempotency_key(request.idempotency_key)
        self._gunzip = GunzipStream(max_bytes) if is_gzip(request.content_encoding) else None
        self._hash = hashlib.sha256()
        self._reader = BodyReader(self.kind, self.record_type, unique_columns=csv_destination,
                                  max_containers=max_containers,
                                  max_columns=max_csv_columns if csv_destination else None)

    def feed(self, raw: bytes | bytearray) -> None:
        # A gzip body a piece of its inflated text at a time: never all that ``raw`` inflates to at once.
        for data in self._gunzip.inflate(raw) if self._gunzip is not None else (raw,):
            self._hash.update(data)
            self._reader.feed(data)

    def finish(self) -> ParsedBatch:
        """The validated batch; raises an AppError (400 ``invalid_records`` naming the lines) on bad input."""
        if self._gunzip is not None:
            self._gunzip.finish()
        try:
            return self._reader.finish()
        except RecordsRejected as exc:
            details = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
            raise BadRequest(exc.message, details=details, code="invalid_records") from None

    @property
    def body_sha256(self) -> str:
        return self._hash.hexdigest()


def stage_parsed(control: ControlStore, intake: BodyIntake, parsed: ParsedBatch,
                 moment: datetime | None = None) -> tuple[BatchState, bool]:
    """Stage a batch ``BodyIntake.finish`` validated; returns (state, created)."""
    when = moment or now_utc()
    parts = [
        StagedPart(key=p.key, text=p.text(), records=p.records, columns=sorted(p.columns))
        for p in sorted(parsed.partitions.values(), key=lambda p: p.key)
    ]
    return stage_batch(control, NewBatch(
        batch_id=new_batch_id(when, intake.request.destination_id, intake.key),
        destination_id=intake.request.destination_id,
        record_type=intake.record_type,
        parts=parts,
        records=parsed.record_count,
        body_sha256=intake.body_sha256,
        moment=when,
        destination_generation=intake.request.destination_generation,
    ))


def accept_batch(
    control: ControlStore, request: IntakeRequest, raw: bytes | bytearray, *, max_bytes: int,
    moment: datetime | None = None, csv_destination: bool = False, max_containers: int | None = None,
    max_csv_columns: int | None = None,
) -> tuple[BatchState, bool]:
    """Validate and stage a whole body; returns (state, created). Raises an AppError and stages nothing on bad
    input. ``max_containers`` (MAX_RECORD_CONTAINERS) bounds each record's objects and arrays;
    ``max_csv_columns`` (MAX_CSV_COLUMNS) a partition's columns, for a CSV destination only.
    """
    intake = BodyIntake(request, max_bytes=max_bytes, csv_destination=csv_destination,
                        max_containers=max_containers, max_csv_columns=max_csv_columns)
    intake.feed(raw)
    return stage_parsed(control, intake, intake.finish(), moment)


def accepted_body(state: BatchState) -> dict[str, Any]:
    return {
        "batch_id": state.batch_id,
        "records": state.records,
        "state": state.state,
        "status_url": f"/api/batches/{state.batch_id}",
    }
