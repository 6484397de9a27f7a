"""The run-now route: POST /api/exports/run runs one export pass and answers its summary.

The pass stops taking batches once 80% of RUN_NOW_BUDGET_SECONDS is spent; those left stay due for the
timer (or the next call), as its summary's `skipped` says."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.api import schemas
from shared.api.responses import ServicesProvider, json_response
from shared.export.runner import run_export_pass


def add_export_routes(api: FastAPI, services: ServicesProvider) -> None:
    @api.post("/api/exports/run", tags=["exports"], operation_id="runExportPass", summary="Run an export pass now",
              responses={200: {"model": schemas.PassSummary, "description": "What the pass did"}})
    async def run_now() -> Response:
        svc = services()
        # Its own budget, not the timer's: the answer must come within Azure's HTTP limit (230 s).
        budget = min(svc.settings.run_now_budget_seconds, svc.settings.pass_time_budget_seconds)
        summary = await run_in_threadpool(partial(run_export_pass, svc, budget_seconds=budget))
        return json_response(summary.to_json())
