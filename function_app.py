"""Azure Functions entry point: wires triggers and routes to plain functions in shared/. No logic here.

The export queue (issue 14): `export_queued` exports the unit each message names; the host scales instances
out on the queue's length and moves a message whose handling raised `maxDequeueCount` times (host.json) to
`<queue>-poison`, where `export_poisoned` fails its batch with the reason. The timer sweeps what was lost.

Three HTTP functions (shared.api.functions says why and which paths): `intake` serves only
POST /api/destinations/{id}/batches, with the platform's key; `public` serves the health probes and the
console's page and assets with no key; `admin` serves everything else, with the operator's key.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.api.functions import ADMIN_FUNCTION, INTAKE_FUNCTION, PUBLIC_FUNCTION
from shared.export.queued import handle_message, handle_poisoned
from shared.export.scheduled import run_scheduled
from shared.services import get_services

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Building the apps does no I/O: services are built on the first request (get_services).
_intake_app = func.AsgiMiddleware(INTAKE_FUNCTION.create_app(get_services))
_admin_app = func.AsgiMiddleware(ADMIN_FUNCTION.create_app(get_services))
_public_app = func.AsgiMiddleware(PUBLIC_FUNCTION.create_app(get_services))


@app.function_name(INTAKE_FUNCTION.name)
@app.route(route=INTAKE_FUNCTION.route, methods=INTAKE_FUNCTION.methods,
           auth_level=func.AuthLevel(INTAKE_FUNCTION.auth_level))
async def intake(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _intake_app.handle_async(req, context)


@app.function_name(ADMIN_FUNCTION.name)
@app.route(route=ADMIN_FUNCTION.route, methods=ADMIN_FUNCTION.methods,
           auth_level=func.AuthLevel(ADMIN_FUNCTION.auth_level))
async def admin(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _admin_app.handle_async(req, context)


@app.function_name(PUBLIC_FUNCTION.name)
@app.route(route=PUBLIC_FUNCTION.route, methods=PUBLIC_FUNCTION.methods,
           auth_level=func.AuthLevel(PUBLIC_FUNCTION.auth_level))
async def public(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _public_app.handle_async(req, context)


@app.timer_trigger(schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_export(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.getLogger(__name__).info("export timer is past due; running now")
    run_scheduled(get_services())


# The queue in the account of AzureWebJobsStorage: a connection string locally, the identity-based
# AzureWebJobsStorage__queueServiceUri in Azure. EXPORT_QUEUE_NAME names it (shared.settings).
@app.queue_trigger(arg_name="message", queue_name="%EXPORT_QUEUE_NAME%", connection="AzureWebJobsStorage")
def export_queued(message: func.QueueMessage) -> None:
    handle_message(get_services(), message.get_body())


@app.queue_trigger(arg_name="message", queue_name="%EXPORT_QUEUE_NAME%-poison", connection="AzureWebJobsStorage")
def export_poisoned(message: func.QueueMessage) -> None:
    handle_poisoned(get_services(), message.get_body(), dequeue_count=message.dequeue_count)
