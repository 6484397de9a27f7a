"""The Functions host sees one HTTP function (auth level FUNCTION) and one timer on %EXPORT_SCHEDULE%."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

import function_app
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite

# get_functions() validates as it builds, and may be called once per app.
_FUNCTIONS = function_app.app.get_functions()


def bindings() -> dict[str, list[dict[str, object]]]:
    return {
        f.get_function_name(): [json.loads(json.dumps(b.get_dict_repr(), default=str)) for b in f.get_bindings()]
        for f in _FUNCTIONS
    }


def test_http_function_is_registered_with_function_key_auth() -> None:
    http = [b for bs in bindings().values() for b in bs if b["type"] == "httpTrigger"]
    assert len(http) == 1
    assert http[0]["authLevel"] == "FUNCTION"
    assert set(http[0]["methods"]) >= {"GET", "POST", "PUT", "DELETE"}


def test_timer_schedule_comes_from_an_app_setting() -> None:
    timer = bindings()["scheduled_export"]
    trigger = next(b for b in timer if b["type"] == "timerTrigger")
    assert trigger["schedule"] == "%EXPORT_SCHEDULE%"


def test_importing_the_app_does_no_io() -> None:
    """Settings are read on first use, not at import: the module imports with no app settings at all."""
    from shared import services

    assert services.get_services.cache_info().currsize == 0


def test_the_timer_function_exports_what_the_http_function_staged(
    monkeypatch: pytest.MonkeyPatch, azurite: Azurite, fresh_container: ContainerClient, tmp_path: Path
) -> None:
    """The deployed code path: app settings from the environment, services built lazily by the triggers."""
    from azure.functions.timer import TimerRequest

    from scripts.local_server import ApiServer
    from shared import services as services_module
    from shared import settings as settings_module
    from shared.api import create_api

    for name, value in {
        "AzureWebJobsStorage": azurite.connection_string, "CONTROL_CONTAINER": f"fn-{uuid.uuid4().hex[:12]}",
        "LOCAL_SECRETS_PATH": str(tmp_path / "secrets.json"), "ALLOW_HTTP_LOOPBACK": "true",
        "STORAGE_RETRY_TOTAL": "1", "STORAGE_RETRY_BACKOFF_SECONDS": "0.1",
    }.items():
        monkeypatch.setenv(name, value)
    settings_module.get_settings.cache_clear()
    services_module.get_services.cache_clear()
    try:
        with ApiServer(create_api(services_module.get_services)) as server, httpx.Client(
            base_url=server.base_url, timeout=60
        ) as api:
            make_destination(api, azurite, fresh_container, dest_id="via-timer")
            batch = post_batch(api, "via-timer", [{"event": "Signed up", "ts": 1763629200 + i} for i in range(7)])
            timer_function = function_app.scheduled_export._function.get_user_function()
            timer_function(TimerRequest(past_due=True))
            assert api.get(batch["status_url"]).json()["state"] == "landed"
        assert len(jsonl_records(fresh_container)) == 7
    finally:
        settings_module.get_settings.cache_clear()
        services_module.get_services.cache_clear()
