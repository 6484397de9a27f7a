"""Routes of batches: status, list with filters and a cursor, retry, discard."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api import schemas
from shared.api.responses import ServicesProvider, check_page_limit, json_response
from shared.control import batches


def add_batch_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.get("/api/batches/{batch_id}", tags=["batches"], operation_id="getBatch", summary="A batch's status",
             responses={200: {"model": schemas.BatchStatus, "description": "The batch's status"}})
    async def get_batch(batch_id: str) -> Response:
        state = await run_in_threadpool(batches.get_state, services().control, batch_id)
        return json_response(batches.public_status(state))

    @api.get("/api/batches", tags=["batches"], operation_id="listBatches", summary="List batches",
             responses={200: {"model": schemas.BatchList, "description": "A page of batches, newest first"}})
    async def list_batches(state: str | None = None, destination_id: str | None = None, limit: int = 100,
                           next: str | None = None) -> Response:
        """Batches newest first (by creation time), `limit` a page, filtered by state and/or destination; pass
        a page's `next` back, with the same filters, for the one after it."""
        page = await run_in_threadpool(
            batches.list_batches, services().control, state=state, destination_id=destination_id,
            limit=check_page_limit(limit), continuation=next,
        )
        return json_response(page)

    @api.post("/api/batches/{batch_id}/retry", tags=["batches"], operation_id="retryBatch",
              summary="Retry a failed batch now", responses={200: {"model": schemas.BatchStatus,
                                                              "description": "The batch, due now"}})
    async def retry_batch(batch_id: str) -> Response:
        svc = services()
        state = await run_in_threadpool(batches.retry_batch, svc.control, batch_id)
        await run_in_threadpool(svc.nudge, state.batch_id, state.destination_id)
        return json_response(batches.public_status(state))

    @api.post("/api/batches/{batch_id}/discard", tags=["batches"], operation_id="discardBatch",
              summary="Discard a failed batch", responses={200: {"model": schemas.BatchStatus,
                                                            "description": "The batch, failed and discarded"}})
    async def discard_batch(batch_id: str) -> Response:
        """Stop a failed batch from waiting for a retry or new credentials: it stays failed with `discarded_at`
        and a note, no longer counts against the destination's status, and exports only if retried on purpose
        (while its staged records are kept). Discarding it again answers the same."""
        state = await run_in_threadpool(batches.discard_batch, services().control, batch_id)
        return json_response(batches.public_status(state))
