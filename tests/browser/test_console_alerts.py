"""A destination's alerts in the console (issue 17), in Chromium behind the host's key check: a batch that failed
and a SAS token expiring in 2 days each raise an alert, the timer's alert sweep delivers them to a local
receiver (ALERT_WEBHOOK_URL), and the card lists them with their delivery, the webhook by its origin only (its
path is its secret), beside the failed runs counted toward the automatic pause. (Helpers: test_console.py.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient
from playwright.sync_api import Browser, expect
from pydantic import SecretStr

from shared.alerts.sweep import sweep_alerts
from shared.services import Services, build_services
from shared.settings import Settings
from tests.browser.test_console import (
    Console,
    Served,
    Shots,
    browser,  # noqa: F401 (a fixture)
    card,
    close,
    console_for,
    enter_key,
    events,
    keyed_server,  # noqa: F401 (a fixture)
    open_page,
    shots,  # noqa: F401 (a fixture)
)
from tests.shared.alerts.receiver import Receiver, receiver
from tests.shared.export_helpers import make_destination, post_batch
from tests.support import secret_watch
from tests.support.azurite import Azurite


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture
def alerting(settings: Settings, hook: Receiver) -> Services:
    """The test's services with ALERT_WEBHOOK_URL at the local receiver."""
    return build_services(settings.model_copy(update={"alert_webhook_url": SecretStr(hook.url)}))


@pytest.fixture
def console(keyed_server: Served, alerting: Services) -> Iterator[Console]:  # noqa: F811
    yield from console_for(keyed_server, alerting)


def test_a_failed_batch_and_an_expiring_sas_show_their_alerts_delivered_to_the_webhook_by_its_origin(
    browser: Browser, console: Console, azurite: Azurite, blob_service: BlobServiceClient, hook: Receiver,  # noqa: F811
    shots: Shots,  # noqa: F811
) -> None:
    gone = blob_service.create_container(f"gone-{uuid.uuid4().hex[:12]}")
    make_destination(console.admin, azurite, gone, "acme", expiry=datetime.now(UTC) + timedelta(days=60))
    gone.delete_container()
    batch_id = post_batch(console.intake, "acme", events(3))["batch_id"]
    console.drain(lambda: console.state(batch_id) == "failed")
    later = blob_service.create_container(f"soon-{uuid.uuid4().hex[:12]}")
    try:
        make_destination(console.admin, azurite, later, "globex", expiry=datetime.now(UTC) + timedelta(days=2))
        sweep_alerts(console.services, scan_every=timedelta(0))  # what the timer does: raise, then deliver
        assert sorted(hook.kinds()) == ["batch_failed", "sas_expiring"]

        watched = open_page(browser, console)
        page = watched.page
        enter_key(page)
        acme = card(page, "acme")
        expect(acme.locator(".failed-runs")).to_have_text(
            re.compile(r"^1 export run failed in a row; it is paused automatically after \d+$"))
        alerts = acme.locator("details.alerts")
        expect(alerts.locator("summary")).to_have_text("Alerts: 1 alert in the last 7 days")
        alerts.locator("summary").click()
        item = alerts.locator("li.alert")
        expect(item).to_contain_text("A batch failed")
        expect(item).to_contain_text("delivered")
        origin = hook.url.split("/hooks/")[0]
        expect(item).to_contain_text(f"the app's webhook ({origin}): delivered")
        globex = card(page, "globex").locator("details.alerts")
        globex.locator("summary").click()
        expect(globex.locator("li.alert")).to_contain_text("SAS token expiring")
        shots.take(page, "alerts")
        secret_watch.observe("the console page with alerts", page.content())
        assert hook.url not in page.content() and "/hooks/" not in page.content()
        assert watched.problems == []
        close(watched)
    finally:
        later.delete_container()
