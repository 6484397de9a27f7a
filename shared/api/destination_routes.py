"""Routes of destinations: PUT (with the probe unless ?verify=false), GET, list, DELETE, test, status, pause and
resume."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api import schemas
from shared.api.responses import ServicesProvider, check_page_limit, json_response, read_json_body
from shared.control import batch_index, destination_status
from shared.control.batches import requeue_destination
from shared.errors import BadRequest, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

DESTINATION_EXAMPLE = {"account_name": "mystorageaccount", "container": "analytics-export", "prefix": "clevertap/",
                       "format": "jsonl", "compression": "gzip", "auth": {"type": "managed_identity"}}
DESTINATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": schemas.COMPONENTS + "DestinationIn"},
                                         "example": DESTINATION_EXAMPLE}},
    }
}


def add_destination_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.put("/api/destinations/{destination_id}", openapi_extra=DESTINATION_BODY, tags=["destinations"],
             operation_id="putDestination", summary="Create or replace a destination",
             responses={200: {"model": schemas.DestinationView, "description": "Replaced"},
                        201: {"model": schemas.DestinationView, "description": "Created"}})
    async def put_destination(destination_id: str, request: Request, verify: bool = True) -> Response:
        """Create or replace a destination. Unless `verify=false`, the credentials are first proven by
        writing, reading back and deleting a probe blob; a destination that fails is not saved."""
        body = await read_json_body(request)
        svc = services()
        result = await run_in_threadpool(svc.destinations.put, destination_id, body, verify=verify)
        if result.credentials_changed and svc.on_credentials_changed is not None:
            await run_in_threadpool(svc.on_credentials_changed, destination_id)
        if result.resumed:  # its batches accepted while paused: their export messages were left to the resume
            await run_in_threadpool(send_waiting, svc, destination_id)
        return json_response(result.view, 201 if result.created else 200)

    @api.get("/api/destinations/{destination_id}", tags=["destinations"], operation_id="getDestination",
             summary="A destination", responses={200: {"model": schemas.DestinationView,
                                                        "description": "The destination"}})
    async def get_destination(destination_id: str) -> Response:
        return json_response(await run_in_threadpool(services().destinations.get, destination_id))

    @api.get("/api/destinations", tags=["destinations"], operation_id="listDestinations",
             summary="List destinations", responses={200: {"model": schemas.DestinationList,
                                                              "description": "A page of destinations"}})
    async def list_destinations(limit: int = 100, next: str | None = None) -> Response:
        """Destinations in id order, `limit` a page; pass a page's `next` back for the one after it."""
        page = await run_in_threadpool(services().destinations.list, limit=check_page_limit(limit), cursor=next)
        return json_response(page)

    @api.delete("/api/destinations/{destination_id}", tags=["destinations"], status_code=204,
                operation_id="deleteDestination", summary="Delete a destination",
                responses={204: {"description": "Deleted"},
                           409: {"description": "The destination has batches not yet landed (see force)"}})
    async def delete_destination(destination_id: str, force: bool = False) -> Response:
        """Delete a destination. With batches not yet landed it answers 409 saying how many, unless
        `force=true`, which fails them with the reason "destination deleted" and deletes their records."""
        await run_in_threadpool(services().destinations.delete, destination_id, force=force)
        return Response(status_code=204)

    @api.post("/api/destinations/{destination_id}/test", tags=["destinations"], operation_id="testDestination",
              summary="Prove a saved destination's credentials",
              responses={200: {"model": schemas.ProbeResult, "description": "The probe passed"}})
    async def probe_saved_destination(destination_id: str) -> Response:
        return json_response(await run_in_threadpool(services().check_destination, destination_id))

    @api.get("/api/destinations/{destination_id}/status", tags=["destinations"], operation_id="getDestinationStatus",
             summary="Whether a destination is up to date", responses={200: {
                 "model": schemas.DestinationStatus, "description": "How current the destination is"}})
    async def get_destination_status(destination_id: str, threshold_seconds: int | None = None) -> Response:
        """Up to date means not paused, no failed batch waits for a retry and no batch accepted longer ago than
        `threshold_seconds` is still pending or running. Also: counts per state, the oldest batch not landed yet,
        the last landing, the last error in words, batches landed per hour over the last 48 hours, the
        consecutive failed export runs (AUTO_PAUSE_AFTER of them pause it), and its latest alerts and how each
        delivery went."""
        return json_response(await run_in_threadpool(status_of, services(), destination_id, threshold_seconds))


    @api.post("/api/destinations/{destination_id}/pause", tags=["destinations"], operation_id="pauseDestination",
              summary="Pause a destination's exports", openapi_extra=PAUSE_BODY,
              responses={200: {"model": schemas.DestinationView, "description": "The destination, paused"}})
    async def pause_destination(destination_id: str, request: Request) -> Response:
        """Stop exporting the destination's batches; intake still accepts and stages them, and they export once
        it is resumed. Pausing a paused destination changes nothing (its first reason stays)."""
        reason = await pause_reason(request)
        svc = services()
        record, _ = await run_in_threadpool(
            partial(svc.destinations.pause, destination_id, by="operator", reason=reason))
        return json_response(svc.destinations.view(record))

    @api.post("/api/destinations/{destination_id}/resume", tags=["destinations"], operation_id="resumeDestination",
              summary="Resume a paused destination",
              responses={200: {"model": schemas.DestinationView, "description": "The destination, not paused"}})
    async def resume_destination(destination_id: str) -> Response:
        """Resume the destination's exports: its failed batches and those backing off are due now (as after new
        credentials), and every batch waiting is sent for export. Resuming one not paused still sends them."""
        svc = services()
        record, _ = await run_in_threadpool(svc.destinations.resume, destination_id)
        await run_in_threadpool(partial(requeue_destination, svc.control, destination_id))
        await run_in_threadpool(send_waiting, svc, destination_id)
        return json_response(svc.destinations.view(record))


PAUSE_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": schemas.COMPONENTS + "PauseIn"},
                                         "example": {"reason": "customer is rotating the storage account"}}},
    }
}
DEFAULT_PAUSE_REASON = "paused by an operator"
MAX_PAUSE_BODY = 4096
RESUME_MESSAGES = 500  # sent by a resume itself; a longer backlog is sent by the timer within QUEUE_GRACE_SECONDS


async def pause_reason(request: Request) -> str:
    """The optional body's reason; no body pauses with DEFAULT_PAUSE_REASON."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_PAUSE_BODY:
            raise PayloadTooLarge(f"the request body is larger than the limit of {MAX_PAUSE_BODY} bytes")
    if not raw.strip():
        return DEFAULT_PAUSE_REASON
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) - {"reason"} or not isinstance(body.get("reason", ""), str):
        message = 'the body must be a JSON object with at most a "reason" string'
        raise ValidationFailed(message, details=[{"field": "reason", "message": message}])
    return str(body.get("reason") or DEFAULT_PAUSE_REASON)


def send_waiting(svc: Services, destination_id: str) -> int:
    """Send the export message of each of the destination's batches due now (after a resume: while it was
    paused the consumer dropped their messages and the timer sent none), oldest first, up to RESUME_MESSAGES;
    returns how many were sent. The timer sends the rest once they are overdue."""
    now = datetime.now(UTC).timestamp()
    due = sorted((marker.due_at, marker.batch_id)
                 for marker in batch_index.open_batches(svc.control, destination_id=destination_id)
                 if not marker.staging)
    waiting = [batch_id for due_at, batch_id in due if due_at <= now][:RESUME_MESSAGES]
    return sum(1 for batch_id in waiting if svc.nudge(batch_id, destination_id))


def status_of(svc: Services, destination_id: str, threshold_seconds: int | None) -> dict[str, Any]:
    """The status of the destination as it is now (this generation of it: one deleted and created again under
    the same id starts afresh)."""
    record = svc.destinations.get_record(destination_id)
    delay = record.coalesce.max_delay_seconds if record.coalesce is not None else None
    subject = destination_status.Subject(
        destination_id=record.id, generation=record.generation, created_at=datetime.fromisoformat(record.created_at),
        threshold=destination_status.threshold_for(threshold_seconds, delay),
        paused=record.paused.model_dump() if record.paused is not None else None,
        auto_pause_after=svc.settings.auto_pause_after)
    return destination_status.destination_status(svc.control, subject, datetime.now(UTC))
