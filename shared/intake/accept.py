"""Webhook intake: decode the body (type, gzip, size limits), validate every record, stage the batch."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.control.batches import NewBatch, StagedPart, new_batch_id, now_utc, stage_batch
from shared.control.store import ControlStore
from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.intake.records import RecordsRejected, parse_batch

BodyKind = Literal["ndjson", "json"]
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                "application/jsonlines"}
JSON_TYPES = {"application/json"}
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class IntakeRequest:
    destination_id: str
    record_type: str
    content_type: str | None
    content_encoding: str | None
    idempotency_key: str | None


def body_kind(content_type: str | None) -> BodyKind:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        return "ndjson"
    if media in JSON_TYPES:
        return "json"
    raise UnsupportedMediaType(
        f"unsupported Content-Type '{media or '(none)'}': send application/x-ndjson (one JSON object per line) "
        "or application/json (an array of objects)"
    )


def check_record_type(value: str | None) -> Literal["events", "profiles"]:
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


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read a request body, refusing it as soon as it passes `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)")
        parts.append(chunk)
    return b"".join(parts)


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in {"identity", ""}:
        return raw
    if encoding not in {"gzip", "x-gzip"}:
        raise UnsupportedMediaType(f"unsupported Content-Encoding '{encoding}': send gzip or no encoding")
    return gunzip_limited(raw, limit)


def gunzip_limited(raw: bytes, limit: int) -> bytes:
    """Inflate gzip, stopping at `limit` bytes of output (a gzip bomb never inflates past it).

    Several gzip members in a row are inflated one after the other, in a loop: a body of thousands of
    tiny members must not recurse thousands of levels deep.
    """
    out: list[bytes] = []
    size = 0
    data = raw
    try:
        while True:  # one gzip member per round
            inflater = zlib.decompressobj(wbits=31)
            while not inflater.eof:
                piece = inflater.decompress(data, 1024 * 1024)
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the gzip body inflates to more than the limit of {limit} bytes (MAX_REQUEST_BYTES)"
                    )
                out.append(piece)
                data = inflater.unconsumed_tail
                if not inflater.eof and not data and not piece:
                    raise BadRequest("the gzip body is truncated")
            data = inflater.unused_data
            if not data.strip(b"\0"):
                break
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid gzip: {exc}") from None
    return b"".join(out)


def accept_batch(
    control: ControlStore, request: IntakeRequest, raw: bytes, *, max_bytes: int, moment: datetime | None = None,
    csv_destination: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Validate and stage; returns (state, created). Raises an AppError and stages nothing on bad input."""
    record_type = check_record_type(request.record_type)
    kind = body_kind(request.content_type)
    key = check_idempotency_key(request.idempotency_key)
    body = decode_body(raw, request.content_encoding, max_bytes)
    try:
        parsed = parse_batch(body, kind, record_type, unique_columns=csv_destination)
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


def accepted_body(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": state["batch_id"],
        "records": state["records"],
        "state": state["state"],
        "status_url": f"/api/batches/{state['batch_id']}",
    }
