"""Azure Functions entry point: wires triggers and routes to plain functions in shared/. No logic here."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.api import create_api
from shared.export_pass import run_export_pass
from shared.services import get_services

app = func.AsgiFunctionApp(app=create_api(get_services), http_auth_level=func.AuthLevel.FUNCTION)


@app.timer_trigger(schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_export(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.getLogger(__name__).info("export timer is past due; running now")
    run_export_pass(get_services())
