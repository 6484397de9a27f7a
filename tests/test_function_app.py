"""The Functions host sees one HTTP function (auth level FUNCTION) and one timer on %EXPORT_SCHEDULE%."""

from __future__ import annotations

import json

import function_app

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
