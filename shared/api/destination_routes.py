"""Routes of destinations: PUT (with the probe unless ?verify=false), GET, list, DELETE, test, status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api import schemas
from shared.api.responses import ServicesProvider, check_page_limit, json_response, read_json_body
from shared.control import destination_status

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
        """Up to date means no failed batch waits for a retry and no batch accepted longer ago than
        `threshold_seconds` is still pending or running. Also: counts per state, the oldest batch not landed yet,
        the last landing, the last error in words, and batches landed per hour over the last 48 hours."""
        return json_response(await run_in_threadpool(status_of, services(), destination_id, threshold_seconds))


def status_of(svc: Services, destination_id: str, threshold_seconds: int | None) -> dict[str, Any]:
    """The status of the destination as it is now (this generation of it: one deleted and created again under
    the same id starts afresh)."""
    record = svc.destinations.get_record(destination_id)
    delay = record.coalesce.max_delay_seconds if record.coalesce is not None else None
    subject = destination_status.Subject(
        destination_id=record.id, generation=record.generation, created_at=datetime.fromisoformat(record.created_at),
        threshold=destination_status.threshold_for(threshold_seconds, delay))
    return destination_status.destination_status(svc.control, subject, datetime.now(UTC))
