"""POST /api/exports/run answers within Azure's HTTP limit (230 s at the front end): the pass it runs has its
own budget, RUN_NOW_BUDGET_SECONDS, far below the timer's PASS_TIME_BUDGET_SECONDS (issue 11, item 8)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.export import runner
from shared.export.lanes import LIGHT_TASKS
from shared.services import Services, build_services
from shared.settings import Settings, load_settings
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite


def test_run_now_stops_taking_batches_at_its_own_budget_and_leaves_the_rest_due(
    settings: Settings, api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
    _api_server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    quick = build_services(settings.model_copy(update={
        "pass_time_budget_seconds": 240, "run_now_budget_seconds": 1.0, "export_concurrency": 1}))
    _api_server[1].value = quick
    make_destination(api, azurite, fresh_container)
    # more than the pass runs at once: EXPORT_CONCURRENCY and the small batches' lane (shared.export.lanes)
    ids = [post_batch(api, "acme", [{"event": "e", "ts": 1763629200 + i}])["batch_id"] for i in range(4 * LIGHT_TASKS)]
    real_export = runner.export_one

    def slow_export(services: Services, batch_id: str, **kwargs: Any) -> str:
        time.sleep(0.4)  # a batch that takes a while: at this rate the pass cannot finish them all in its budget
        return real_export(services, batch_id, **kwargs)

    monkeypatch.setattr(runner, "export_one", slow_export)
    summary = api.post("/api/exports/run").json()
    assert summary["landed"] < len(ids) and summary["skipped"] == len(ids) - summary["landed"]
    assert summary["duration_seconds"] < 2.0
    states = {api.get(f"/api/batches/{bid}").json()["state"] for bid in ids}
    assert states == {"landed", "pending"}  # the rest stay due for the timer or the next call


def test_the_run_now_budget_stays_well_under_the_http_limit() -> None:
    settings = load_settings(control_storage_connection="UseDevelopmentStorage=true")
    assert settings.run_now_budget_seconds == 150
    with pytest.raises(Exception, match="RUN_NOW_BUDGET_SECONDS"):
        load_settings(control_storage_connection="UseDevelopmentStorage=true", run_now_budget_seconds=230)
