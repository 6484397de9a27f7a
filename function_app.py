"""Azure Functions entry point: wires triggers and routes to plain functions in shared/. No logic here.

Two HTTP functions, each with its own function key (shared.api.functions says why and which paths):
`intake` serves only POST /api/destinations/{id}/batches, for the platform; `admin` serves everything else.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.api.functions import ADMIN_FUNCTION, INTAKE_FUNCTION
from shared.export.scheduled import run_scheduled
from shared.services import get_services

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Building the apps does no I/O: services are built on the first request (get_services).
_intake_app = func.AsgiMiddleware(INTAKE_FUNCTION.create_app(get_services))
_admin_app = func.AsgiMiddleware(ADMIN_FUNCTION.create_app(get_services))


@app.function_name(INTAKE_FUNCTION.name)
@app.route(route=INTAKE_FUNCTION.route, methods=INTAKE_FUNCTION.methods)
async def intake(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _intake_app.handle_async(req, context)


@app.function_name(ADMIN_FUNCTION.name)
@app.route(route=ADMIN_FUNCTION.route, methods=ADMIN_FUNCTION.methods)
async def admin(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _admin_app.handle_async(req, context)


@app.timer_trigger(schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_export(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.getLogger(__name__).info("export timer is past due; running now")
    run_scheduled(get_services())
