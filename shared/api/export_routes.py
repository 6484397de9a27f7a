"""The run-now route: POST /api/exports/run runs one export pass and answers its summary."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api.responses import ServicesProvider, json_response
from shared.export.runner import run_export_pass


def add_export_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.post("/api/exports/run", tags=["exports"])
    async def run_now() -> Response:
        summary = await run_in_threadpool(run_export_pass, services())
        return json_response(summary.to_json())
