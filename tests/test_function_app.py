"""The Functions host sees three HTTP functions (intake and admin at auth level FUNCTION, public at ANONYMOUS), a
timer on %EXPORT_SCHEDULE%, and the export queue's two queue triggers (the queue and its poison queue, issue 14)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
import pytest
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


def test_intake_and_admin_are_keyed_http_functions_and_public_alone_is_anonymous() -> None:
    """Two keyed functions, so two function keys: the platform is given the intake function's key only. The
    public function (health probes, the console's page) needs none."""
    http = http_triggers()
    assert set(http) == {"intake", "admin", "public"}
    assert http["intake"]["route"] == "destinations/{destination_id}/batches"
    assert http["intake"]["methods"] == ["POST"]
    assert http["admin"]["route"].startswith("{*route:regex(")  # every other path (see shared.api.functions)
    assert {"GET", "POST", "PUT", "DELETE"} <= set(http["admin"]["methods"])
    assert http["public"]["route"].startswith("{*route:regex((?s)^(health")  # /api/health..., /api/console...
    assert {name: trigger["authLevel"] for name, trigger in http.items()} == {
        "intake": "FUNCTION", "admin": "FUNCTION", "public": "ANONYMOUS"}
    for function in HTTP_FUNCTIONS:  # what Azure sees is the table the local host emulation and the tests use
        trigger = http[function.name]
        assert trigger["authLevel"] == function.auth_level.upper()
        assert trigger["route"] == function.route
        assert sorted(trigger["methods"]) == sorted(function.methods)


def test_timer_schedule_comes_from_an_app_setting() -> None:
    timer = bindings()["scheduled_export"]
    trigger = next(b for b in timer if b["type"] == "timerTrigger")
    assert trigger["schedule"] == "%EXPORT_SCHEDULE%"


def test_the_export_queue_triggers_read_the_queue_named_by_an_app_setting() -> None:
    """The queue trigger and the poison queue's, both on the account of AzureWebJobsStorage (a connection
    string locally, AzureWebJobsStorage__queueServiceUri in Azure), the queue named by EXPORT_QUEUE_NAME."""
    found = {name: next(b for b in bs if b["type"] == "queueTrigger") for name, bs in bindings().items()
             if any(b["type"] == "queueTrigger" for b in bs)}
    assert set(found) == {"export_queued", "export_poisoned"}
    assert found["export_queued"]["queueName"] == "%EXPORT_QUEUE_NAME%"
    assert found["export_poisoned"]["queueName"] == "%EXPORT_QUEUE_NAME%-poison"
    for trigger in found.values():
        assert trigger["connection"] == "AzureWebJobsStorage"


def test_host_json_sets_the_queue_trigger_above_the_attempt_budget() -> None:
    """maxDequeueCount sits above MAX_ATTEMPTS: the poison queue only catches messages that crash the consumer,
    and a batch's own failures end with its attempts."""
    from pathlib import Path

    from shared.export.queued import QueueOptions
    from shared.settings import Settings

    options = QueueOptions.from_host_json(Path(function_app.__file__).with_name("host.json"))
    default_attempts = Settings.model_fields["max_attempts"].default
    assert options.max_dequeue_count > default_attempts
    assert 1 <= options.new_batch_threshold <= options.batch_size <= 32
    assert options.max_polling_interval_seconds <= 5  # seconds from accepted to exporting


def test_importing_the_app_does_no_io() -> None:
    """Settings are read on first use, not at import: the module imports with no app settings at all."""
    from shared import services

    assert services.get_services.cache_info().currsize == 0


def test_the_queue_function_exports_what_the_http_function_staged_and_the_timer_sweeps(
    app_environment: None, azurite: Azurite, fresh_container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed code path: app settings from the environment, services built lazily by the triggers. The
    HTTP function's batch goes out on the queue; the queue trigger's function exports it as the host calls it.
    A second batch's message is lost: the timer, past the grace period, sends it again."""
    from azure.functions.queue import QueueMessage  # the concrete message the host's worker builds
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
        queue = services_module.get_services().export_queue
        assert queue is not None
        queued = function_app.export_queued._function.get_user_function()
        (message,) = queue.receive(max_messages=32, visibility_seconds=60)
        queued(QueueMessage(id=message.message.id, body=message.body, dequeue_count=1))
        queue.delete(message)
        assert api.get(batch["status_url"]).json()["state"] == "landed"
        lost = post_batch(api, "via-timer", [{"event": "Signed up", "ts": 1763629300 + i} for i in range(3)])
        queue.queue.clear_messages()
        monkeypatch.setenv("QUEUE_GRACE_SECONDS", "0")
        from shared import settings as settings_module

        settings_module.get_settings.cache_clear()
        services_module.get_services.cache_clear()
        timer_function = function_app.scheduled_export._function.get_user_function()
        timer_function(TimerRequest(past_due=True))
        queue = services_module.get_services().export_queue
        assert queue is not None
        (message,) = queue.receive(max_messages=32, visibility_seconds=60)
        queued(QueueMessage(id=message.message.id, body=message.body, dequeue_count=1))
        assert api.get(lost["status_url"]).json()["state"] == "landed"
        # Then the retention sweep ran: its first run indexes the states written before the index.
        assert batch_index.is_complete(services_module.get_services().control, batches.STATES_PREFIX)
    assert len(jsonl_records(fresh_container)) == 10


def test_each_http_function_forwards_to_its_own_app_and_cannot_reach_the_others(
    app_environment: None, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """The functions' own handlers, called as the host calls them: even a request the host would never route to
    the intake function (creating a destination) finds nothing there, a batch post finds nothing in admin, and
    the public function answers the health probe and nothing else."""
    intake = function_app.intake._function.get_user_function()
    admin = function_app.admin._function.get_user_function()
    public = function_app.public._function.get_user_function()
    url = "http://localhost:7071/api/destinations/fwd"
    body = sas_destination(azurite.account_url, fresh_container.container_name,
                           container_sas(fresh_container.container_name))
    put = HttpRequest("PUT", f"{url}?verify=false", headers={"content-type": "application/json"},
                      body=orjson.dumps(body))
    post = HttpRequest("POST", f"{url}/batches?type=events", headers={"content-type": "application/x-ndjson"},
                       body=b'{"event": "Signed up", "ts": 1763629200}\n')

    health = HttpRequest("GET", "http://localhost:7071/api/health", body=b"")

    async def calls() -> list[tuple[int, dict[str, object]]]:  # no invocation context: the apps never read it
        answers = [await intake(put, None), await public(put, None), await admin(put, None), await admin(post, None),
                   await public(post, None), await intake(post, None), await admin(health, None),
                   await intake(health, None), await public(health, None)]
        return [(a.status_code, json.loads(a.get_body())) for a in answers]

    (put_intake, put_public, put_admin, post_admin, post_public, post_intake, health_admin, health_intake,
     health_public) = asyncio.run(calls())
    not_found = (404, {"error": {"code": "not_found", "message": "Not Found", "details": []}})
    assert put_public == post_public == health_admin == health_intake == not_found
    assert health_public == (200, {"status": "ok"})
    assert put_intake == (404, {"error": {"code": "not_found", "message": "Not Found", "details": []}})
    assert put_admin[0] == 201, put_admin
    assert post_admin == (404, {"error": {"code": "not_found", "message": "Not Found", "details": []}})
    assert post_intake[0] == 202, post_intake
    assert post_intake[1]["records"] == 1
