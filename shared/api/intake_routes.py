"""The intake route: POST /api/destinations/{id}/batches (the platform's, opened by the intake key)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from opentelemetry.trace import SpanKind
from starlette.concurrency import run_in_threadpool

from shared import telemetry
from shared.api import schemas
from shared.api.responses import ServicesProvider, json_response
from shared.export.queued import first_delay
from shared.intake.accept import BodyIntake, IntakeRequest, accepted_body, stage_parsed
from shared.intake.body import too_large

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.control.batch_state import BatchState
    from shared.destinations.record import DestinationRecord
    from shared.services import Services

# A record that is both a valid event (name, time) and a valid profile (identity).
INTAKE_EXAMPLE_RECORD = {"event": "purchase", "timestamp": "2026-11-20T09:15:00Z", "distinct_id": "u-1",
                         "properties": {"amount": 19.99, "currency": "EUR"}}
INTAKE_EXAMPLE_NDJSON = orjson.dumps(INTAKE_EXAMPLE_RECORD).decode() + "\n"
INTAKE_BODY = {
    "parameters": [
        {"name": "type", "in": "query", "required": True,
         "schema": {"type": "string", "enum": ["events", "profiles"]}},
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": INTAKE_EXAMPLE_NDJSON},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}},
                                 "example": [INTAKE_EXAMPLE_RECORD]},
        },
    },
}


ACCEPTED_HEADERS = {
    "Location": {"description": "The batch's status URL", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when an earlier POST with this Idempotency-Key made the batch",
                            "schema": {"type": "string", "enum": ["true"]}},
}
RETRY_AFTER_HEADER = {"description": "Seconds to wait before sending the same request again",
                      "schema": {"type": "integer"}}


# How long a client told "busy" should wait: about the time one large body takes to read, parse and stage.
BUSY_RETRY_AFTER_SECONDS = 5


class IntakeGate:
    """At most `limit` intake requests of this process read and parse bodies at once: each may hold a body of
    MAX_REQUEST_BYTES and about as much again while it is staged. The excess is refused at once (503 with
    Retry-After): waiting in a queue would hold their connections and bodies as well. Event-loop only: the
    count is never touched from a thread, so it needs no lock."""

    def __init__(self) -> None:
        self.active = 0

    def enter(self, limit: int) -> bool:
        """Take a place, or answer False when all `limit` are taken."""
        if self.active >= limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def add_intake_routes(api: FastAPI, services: ServicesProvider) -> None:
    gate = IntakeGate()

    @api.post("/api/destinations/{destination_id}/batches", openapi_extra=INTAKE_BODY, status_code=202,
              tags=["batches"], operation_id="postBatch", summary="Post a batch of records",
              responses={202: {"model": schemas.BatchAccepted, "headers": ACCEPTED_HEADERS,
                               "description": "Durably staged: the export queue takes it within seconds (or the "
                                              "timer, if its message is lost)"},
                         503: {"headers": {"Retry-After": RETRY_AFTER_HEADER},
                               "description": "Busy (`intake_busy`), or a dependency is unavailable"}})
    async def post_batch(destination_id: str, request: Request) -> Response:
        with telemetry.traced("intake batch", kind=SpanKind.SERVER, destination_id=destination_id,
                              record_type=request.query_params.get("type", "")) as span:
            svc = services()
            limit = svc.settings.max_concurrent_intake
            if not gate.enter(limit):
                span.outcome("busy")
                message = (f"intake is busy: {limit} batches are being received already (MAX_CONCURRENT_INTAKE); "
                           f"send this batch again in {BUSY_RETRY_AFTER_SECONDS} seconds")
                return json_response({"error": {"code": "intake_busy", "message": message, "details": []}}, 503,
                                     {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
            try:
                return await _post_batch(svc, destination_id, request)
            finally:
                gate.leave()


async def _post_batch(svc: Services, destination_id: str, request: Request) -> Response:
    destination = await run_in_threadpool(svc.destinations.get_record, destination_id)
    settings = svc.settings
    intake = BodyIntake(IntakeRequest(
        destination_id=destination_id,
        record_type=request.query_params.get("type", ""),
        content_type=request.headers.get("content-type"),
        content_encoding=request.headers.get("content-encoding"),
        idempotency_key=request.headers.get("idempotency-key"),
        destination_generation=destination.generation,
    ), max_bytes=settings.max_request_bytes, csv_destination=destination.format == "csv",
        max_containers=settings.max_record_containers, max_csv_columns=settings.max_csv_columns)
    rest = await feed_body(request.stream(), intake, settings.max_request_bytes)
    state, created = await run_in_threadpool(_accept, svc, intake, rest, destination)
    telemetry.records_accepted(destination_id, state.type, batch_id=state.batch_id, records=state.records,
                               staged_bytes=state.staged_bytes, new=created)
    headers = {"Location": f"/api/batches/{state.batch_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response(accepted_body(state), 202, headers)


def _accept(svc: Services, intake: BodyIntake, rest: bytes | bytearray, destination: DestinationRecord,
            ) -> tuple[BatchState, bool]:
    """The body's last piece parsed, the batch checked and staged, and a new batch's export message sent: one
    trip to a worker thread (a small body's only one after the destination's read)."""
    if rest:
        intake.feed(rest)
    state, created = stage_parsed(svc.control, intake, intake.finish())
    if created:  # committed: the export queue may take it now (a replay's first request sent its message)
        svc.nudge(state.batch_id, state.destination_id, first_delay(destination), record_type=state.type)
    return state, created


FEED_BYTES = 1024 * 1024  # the body goes to the parser (in a worker thread) in pieces of about this size


async def feed_body(chunks: AsyncIterator[bytes], intake: BodyIntake, limit: int) -> bytearray:
    """Hand the body to ``intake`` as it arrives, off the event loop, refusing it as soon as it passes ``limit``
    bytes: the body is parsed while it is read, and never held whole. Returns its last piece (under FEED_BYTES),
    not fed yet: the caller feeds it with the work that follows in the same worker thread."""
    size = 0
    pending = bytearray()
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        pending += chunk
        if len(pending) >= FEED_BYTES:
            await run_in_threadpool(intake.feed, pending)
            pending = bytearray()
    return pending
