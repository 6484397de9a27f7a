"""The intake route: POST /api/destinations/{id}/batches (the platform's, opened by the intake key)."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api.responses import ServicesProvider, json_response
from shared.intake.accept import IntakeRequest, accept_batch, accepted_body
from shared.intake.body import read_limited

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


def add_intake_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.post("/api/destinations/{destination_id}/batches", openapi_extra=INTAKE_BODY, status_code=202,
              tags=["batches"])
    async def post_batch(destination_id: str, request: Request) -> Response:
        svc = services()
        destination = await run_in_threadpool(svc.destinations.get_record, destination_id)
        raw = await read_limited(request.stream(), svc.settings.max_request_bytes)
        intake = IntakeRequest(
            destination_id=destination_id,
            record_type=request.query_params.get("type", ""),
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        state, created = await run_in_threadpool(
            accept_batch, svc.control, intake, raw, max_bytes=svc.settings.max_request_bytes,
            csv_destination=destination.format == "csv",
        )
        headers = {"Location": f"/api/batches/{state.batch_id}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return json_response(accepted_body(state), 202, headers)
