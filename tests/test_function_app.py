"""The Functions host sees two HTTP functions (intake, admin; auth level FUNCTION) and a timer on %EXPORT_SCHEDULE%."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
from azure.functions import HttpRequest
from azure.storage.blob import ContainerClient

import function_app
from shared.api.functions import HTTP_FUNCTIONS
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

# get_functions() validates as it builds, and may be called once per app.
_FUNCTIONS = function_app.app.get_functions()


def bindings() -> dict[str, list[dict[str, object]]]:
    return {
        f.get_function_name(): [json.loads(json.dumps(b.get_dict_repr(), default=str)) for b in f.get_bindings()]
        for f in _FUNCTIONS
    }


def http_triggers() -> dict[str, dict[str, Any]]:
    return {name: b for name, bs in bindings().items() for b in bs if b["type"] == "httpTrigger"}


def test_intake_and_admin_are_two_http_functions_each_at_auth_level_function() -> None:
    """Two functions, so two function keys: the platform is given the intake function's key only."""
    http = http_triggers()
    assert set(http) == {"intake", "admin"}
    assert http["intake"]["route"] == "destinations/{destination_id}/batches"
    assert http["intake"]["methods"] == ["POST"]
    assert http["admin"]["route"].startswith("{*route:regex(")  # every other path (see shared.api.functions)
    assert {"GET", "POST", "PUT", "DELETE"} <= set(http["admin"]["methods"])
    for function in HTTP_FUNCTIONS:  # what Azure sees is the table the local host emulation and the tests use
        trigger = http[function.name]
        assert trigger["authLevel"] == "FUNCTION"
        assert trigger["route"] == function.route
        assert sorted(trigger["methods"]) == sorted(function.methods)


def test_timer_schedule_comes_from_an_app_setting() -> None:
    timer = bindings()["scheduled_export"]
    trigger = next(b for b in timer if b["type"] == "timerTrigger")
    assert trigger["schedule"] == "%EXPORT_SCHEDULE%"


def test_importing_the_app_does_no_io() -> None:
    """Settings are read on first use, not at import: the module imports with no app settings at all."""
    from shared import services

    assert services.get_services.cache_info().currsize == 0


def test_the_timer_function_exports_what_the_http_function_staged(
    app_environment: None, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """The deployed code path: app settings from the environment, services built lazily by the triggers."""
    from azure.functions.timer import TimerRequest

    from scripts.local_server import ApiServer
    from shared import services as services_module
    from shared.api.app import create_api
    from shared.control import batch_index, batches

    with ApiServer(create_api(services_module.get_services)) as server, httpx.Client(
        base_url=server.base_url, timeout=60
    ) as api:
        make_destination(api, azurite, fresh_container, dest_id="via-timer")
        batch = post_batch(api, "via-timer", [{"event": "Signed up", "ts": 1763629200 + i} for i in range(7)])
        timer_function = function_app.scheduled_export._function.get_user_function()
        timer_function(TimerRequest(past_due=True))
        assert api.get(batch["status_url"]).json()["state"] == "landed"
        # Then the retention sweep ran: its first run indexes the states written before the index.
        assert batch_index.is_complete(services_module.get_services().control, batches.STATES_PREFIX)
    assert len(jsonl_records(fresh_container)) == 7


def test_each_http_function_forwards_to_its_own_app_and_cannot_reach_the_other(
    app_environment: None, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """The functions' own handlers, called as the host calls them: even a request the host would never route to
    the intake function (creating a destination) finds nothing there, and a batch post finds nothing in admin."""
    intake = function_app.intake._function.get_user_function()
    admin = function_app.admin._function.get_user_function()
    url = "http://localhost:7071/api/destinations/fwd"
    body = sas_destination(azurite.account_url, fresh_container.container_name,
                           container_sas(fresh_container.container_name))
    put = HttpRequest("PUT", f"{url}?verify=false", headers={"content-type": "application/json"},
                      body=orjson.dumps(body))
    post = HttpRequest("POST", f"{url}/batches?type=events", headers={"content-type": "application/x-ndjson"},
                       body=b'{"event": "Signed up", "ts": 1763629200}\n')

    async def calls() -> list[tuple[int, dict[str, object]]]:  # no invocation context: the apps never read it
        answers = [await intake(put, None), await admin(put, None), await admin(post, None), await intake(post, None)]
        return [(a.status_code, json.loads(a.get_body())) for a in answers]

    put_intake, put_admin, post_admin, post_intake = asyncio.run(calls())
    assert put_intake == (404, {"error": {"code": "not_found", "message": "Not Found", "details": []}})
    assert put_admin[0] == 201, put_admin
    assert post_admin == (404, {"error": {"code": "not_found", "message": "Not Found", "details": []}})
    assert post_intake[0] == 202, post_intake
    assert post_intake[1]["records"] == 1
