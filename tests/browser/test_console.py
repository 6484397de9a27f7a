"""The operator console (issue 17) in a real browser: Debian's Chromium driven by Playwright, the real server on
Azurite behind the Functions host's key check (as in Azure and under `make serve` with LOCAL_ADMIN_KEY), real
exports through the export queue or "Run export now".

An operator opens /api/console (no key), is asked for the admin key once (kept in sessionStorage, sent as a
header, never in a URL), and sees the destinations and batches the test made; a batch failed by an expired SAS
shows red with its reason, and after new credentials and "Retry" it lands; a SAS token expiring in 2 days counts
down in the warning colour. Each test saves a screenshot of each view under .local/test-results/<test name>/
(UPDATE_DOCS_SCREENSHOT=1 also writes docs/console.png for the README). Hostile text, the empty state and the
keyboard are in test_console_safety.py; headers and caching without a browser in test_console_assets.py.

Needs /usr/bin/chromium (`apt-get install -y chromium`; .ci/run installs it): without it these tests fail, they
do not skip. Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Request, Route, expect, sync_playwright

from scripts.functions_host import FunctionKeyCheck
from shared.api.app import create_api
from shared.export.queued import QueueOptions, consume_once
from shared.services import Services
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support import secret_watch
from tests.support.azurite import Azurite
from tests.support.server import ApiServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ADMIN_KEY = secret_watch.register("admin-key-for-the-console-tests", "admin function key") or ""
INTAKE_KEY = "intake-key-for-the-console-tests"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
QUEUE = QueueOptions(batch_size=8, new_batch_threshold=4, max_dequeue_count=3, visibility_timeout_seconds=0,
                     max_polling_interval_seconds=0.2)
# A screenshot for the README: UPDATE_DOCS_SCREENSHOT=1 writes docs/console.png from the overview test.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`); "
                               "the browser tests need it and never download a browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class CurrentServices:
    """The module's server serves whichever test's services are current."""

    value: Services | None = None

    def __call__(self) -> Services:
        assert self.value is not None, "no services for this test"
        return self.value


@dataclass
class Served:
    base_url: str
    current: CurrentServices
    keyed: bool  # behind the host's key check, as in Azure (and `make serve` with LOCAL_ADMIN_KEY)


def serve(keyed: bool) -> Iterator[Served]:
    current = CurrentServices()
    app: Any = secret_watch.watching(create_api(current))
    if keyed:
        app = FunctionKeyCheck(app, {"admin": ADMIN_KEY, "intake": INTAKE_KEY})
    with ApiServer(app) as server:
        yield Served(server.base_url, current, keyed)


@dataclass
class Console:
    """One test's view of the app: its base URL, and API clients with the admin and the intake key."""

    base_url: str
    keyed: bool
    services: Services
    admin: httpx.Client
    intake: httpx.Client

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/console"

    def drain(self, until: Callable[[], bool], seconds: float = 60) -> None:
        """Consume the export queue, as the host would, until `until()` holds."""
        queue = self.services.export_queue
        assert queue is not None, "the test Azurite serves queues"
        deadline = time.monotonic() + seconds
        while not until():
            assert time.monotonic() < deadline, "the queue consumer did not finish in time"
            if consume_once(self.services, queue, QUEUE) == 0:
                time.sleep(0.1)

    def state(self, batch_id: str) -> str:
        return str(self.admin.get(f"/api/batches/{batch_id}").json()["state"])


def console_for(served: Served, services: Services) -> Iterator[Console]:
    served.current.value = services
    admin_headers = {"x-functions-key": ADMIN_KEY} if served.keyed else {}
    intake_headers = {"x-functions-key": INTAKE_KEY} if served.keyed else {}
    with httpx.Client(base_url=served.base_url, timeout=60, headers=admin_headers) as admin, \
            httpx.Client(base_url=served.base_url, timeout=60, headers=intake_headers) as intake:
        yield Console(served.base_url, served.keyed, services, admin, intake)
    served.current.value = None


@dataclass
class Watched:
    """A page, with what went wrong on it and every request it made."""

    page: Page
    origin: str
    problems: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if f"{url.scheme}://{url.netloc}" != self.origin:
            self.outside.append(route.request.url)
            route.abort("blockedbyclient")
        else:
            self.requests.append(route.request)
            route.continue_()

    def console(self, message: ConsoleMessage) -> None:
        # A 401 the console answers by asking for the key is the browser's own line, not a problem of the page.
        if message.type == "error" and "401 (Unauthorized)" not in message.text:
            self.problems.append(f"console: {message.text}")


def open_page(browser: Browser, console: Console, viewport: dict[str, int] = LAPTOP, fragment: str = "") -> Watched:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    watched = Watched(page, console.base_url)
    page.route("**/*", watched.route)
    page.on("console", watched.console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (watched.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(console.url + fragment)
    return watched


def close(watched: Watched) -> None:
    watched.page.context.close()


def enter_key(page: Page, key: str = ADMIN_KEY) -> None:
    form = page.locator("#key-form")
    form.wait_for(state="visible")
    page.get_by_label("Admin function key").fill(key)
    form.get_by_role("button", name="Use this key").click()


@dataclass
class Shots:
    """Screenshots in the test's output folder: .local/test-results/<test name>/ (not committed)."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, name: str, *, docs: bool = False) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if docs and os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
            page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
        return path


def shots_for(request: pytest.FixtureRequest) -> Shots:
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
    return Shots(Path(request.config.rootpath) / ".local" / "test-results" / name)


# --- Fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[Served]:
    """The whole app behind the host's key check with the admin and intake keys, as in Azure."""
    yield from serve(keyed=True)


@pytest.fixture
def console(keyed_server: Served, services: Services) -> Iterator[Console]:
    yield from console_for(keyed_server, services)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return shots_for(request)


def events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event": "Signed up", "ts": 1763629200 + start + i, "$insert_id": f"i{start + i}"} for i in range(count)]


def card(page: Page, destination_id: str) -> Locator:
    return page.locator(f"article.card[data-destination='{destination_id}']")


def nav(page: Page, view: str) -> Locator:
    return page.get_by_role("navigation", name="Views").get_by_role("link", name=view)


def assert_key_kept_only_in_the_tab(watched: Watched) -> None:
    page = watched.page
    assert page.evaluate("() => Object.values(sessionStorage)") == [ADMIN_KEY]
    assert page.evaluate("() => localStorage.length") == 0
    assert page.evaluate("() => document.cookie") == ""
    for request in watched.requests:
        assert ADMIN_KEY not in request.url, request.url
    assert ADMIN_KEY not in page.content()
    api_calls = [r for r in watched.requests if "/api/console" not in r.url]
    assert api_calls and all(r.headers.get("x-functions-key") == ADMIN_KEY for r in api_calls[-3:])


# --- Tests -------------------------------------------------------------------------------------------------------


def test_the_console_asks_for_the_key_once_and_shows_the_destinations_and_batches_the_test_created(
    browser: Browser, console: Console, azurite: Azurite, blob_service: BlobServiceClient, shots: Shots,
) -> None:
    containers = [blob_service.create_container(f"con-{uuid.uuid4().hex[:12]}") for _ in range(2)]
    try:
        make_destination(console.admin, azurite, containers[0], "acme")
        make_destination(console.admin, azurite, containers[1], "globex")
        landed = [post_batch(console.intake, "acme", events(5, 10 * i))["batch_id"] for i in range(2)]
        console.drain(lambda: all(console.state(b) == "landed" for b in landed))
        waiting = post_batch(console.intake, "globex", events(3))["batch_id"]

        watched = open_page(browser, console)
        page = watched.page
        enter_key(page, "not-the-admin-key")  # the page itself needed no key; the API asked for one
        expect(page.locator("#key-error")).to_have_text(re.compile("That key was refused"))
        enter_key(page)
        expect(card(page, "acme")).to_be_visible()
        acme, globex = card(page, "acme"), card(page, "globex")
        expect(acme.locator(".badge.good")).to_have_text("Up to date")
        expect(acme).to_contain_text("SAS token (read, write, delete)")
        expect(acme).to_contain_text("jsonl · gzip · hive layout · hourly partitions")
        expect(acme).to_contain_text("2 landed in 24 h")
        expect(acme.locator("figure.chart")).to_have_attribute("aria-label", re.compile(
            r"10 records in 2 batches landed in the last 48 hours"))
        assert acme.locator("rect.chart-bar").count() == 48
        expect(globex).to_contain_text("1 pending")
        expect(globex).to_contain_text(f"pending, batch {waiting}")
        shots.take(page, "destinations")

        page.reload()  # kept for the tab: not asked again
        expect(card(page, "acme")).to_be_visible()
        assert page.locator("#key-form").is_hidden()

        nav(page, "Batches").click()
        rows = page.locator("table.batches tbody tr")
        expect(rows).to_have_count(3)
        for batch_id in [*landed, waiting]:
            expect(page.locator(f"tr[data-batch='{batch_id}']")).to_be_visible()
        page.get_by_label("Destination").select_option("globex")
        page.get_by_role("button", name="Show", exact=True).click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("pending")
        shots.take(page, "batches")

        page.get_by_label("Destination").select_option("acme")
        page.get_by_role("button", name="Show", exact=True).click()
        expect(rows).to_have_count(2)
        page.get_by_role("link", name=landed[0]).click()
        expect(page.locator("#view h2")).to_contain_text(landed[0])
        files = page.locator("table.files tbody tr")
        expect(files).to_have_count(1)
        expect(files.first).to_contain_text("events/date=")
        expect(page.locator(".facts")).to_contain_text("_manifests/")
        shots.take(page, "batch")

        assert_key_kept_only_in_the_tab(watched)
        page.get_by_role("button", name="Forget key").click()
        expect(page.locator("#key-form")).to_be_visible()
        assert page.evaluate("() => sessionStorage.length") == 0
        assert watched.problems == [] and watched.outside == []
        close(watched)
    finally:
        for container in containers:
            container.delete_container()


def test_a_sas_token_expiring_in_two_days_counts_down_in_the_warning_colour(
    browser: Browser, console: Console, azurite: Azurite, blob_service: BlobServiceClient, shots: Shots,
) -> None:
    """Beside it, a healthy destination with landings and one whose container is gone: the README's screenshot."""
    containers = [blob_service.create_container(f"exp-{uuid.uuid4().hex[:12]}") for _ in range(3)]
    try:
        now = datetime.now(UTC)
        make_destination(console.admin, azurite, containers[0], "acme", expiry=now + timedelta(days=30))
        make_destination(console.admin, azurite, containers[1], "globex", expiry=now + timedelta(days=2))
        make_destination(console.admin, azurite, containers[2], "initech", expiry=now + timedelta(days=90))
        batches = [post_batch(console.intake, "acme", events(20 * (i + 1), 100 * i))["batch_id"] for i in range(3)]
        containers.pop().delete_container()  # initech's customer deleted the container
        broken = post_batch(console.intake, "initech", events(4))["batch_id"]
        console.drain(lambda: all(console.state(b) == "landed" for b in batches) and console.state(broken) == "failed")
        waiting = post_batch(console.intake, "globex", events(7))["batch_id"]

        watched = open_page(browser, console)
        page = watched.page
        enter_key(page)
        soon = card(page, "globex").locator(".countdown")
        later = card(page, "acme").locator(".countdown")
        expect(soon).to_have_class(re.compile("level-warn"))
        expect(soon).to_have_text(re.compile(r"expires in 1 d 23 h \d+ min \d+ s, under 7 days: renew it soon"))
        expect(later).to_have_class(re.compile("level-ok"))
        expect(later).to_have_text(re.compile(r"expires in 29 d 23 h \d+ min \d+ s"))
        colours = page.evaluate("""() => [...document.querySelectorAll('.countdown')].map(
            (node) => getComputedStyle(node).backgroundColor)""")
        assert colours.count("rgb(255, 243, 205)") == 1  # the warning colour, on the 2-day token only
        expect(card(page, "globex").locator(".warnings")).to_contain_text("the SAS token expires on")
        expect(card(page, "globex")).to_contain_text(f"pending, batch {waiting}")
        expect(card(page, "initech").locator(".last-error")).to_contain_text("does not exist")
        expect(card(page, "acme").locator("figure.chart")).to_have_attribute("aria-label", re.compile("120 records"))
        expect(page.locator(".view-head .summary")).to_have_text(  # health at a glance
            "3 destinations · 1 not up to date: initech · 1 SAS expiring or expired: globex")
        shown = soon.inner_text()
        expect(soon).not_to_have_text(shown)  # it counts down
        shots.take(page, "destinations", docs=True)
        assert watched.problems == []
        close(watched)
    finally:
        for container in containers:
            container.delete_container()


def test_a_batch_failed_by_an_expired_sas_shows_red_with_its_reason_and_lands_after_new_sas_and_retry(
    browser: Browser, console: Console, azurite: Azurite, fresh_container: ContainerClient, shots: Shots,
) -> None:
    expiry = datetime.now(UTC) + timedelta(seconds=3)
    make_destination(console.admin, azurite, fresh_container, "acme", expiry=expiry)
    batch_id = post_batch(console.intake, "acme", events(6))["batch_id"]
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.5)  # Azurite refuses it from now on
    console.drain(lambda: console.state(batch_id) == "failed")

    watched = open_page(browser, console)
    page = watched.page
    enter_key(page)
    acme = card(page, "acme")
    expect(acme.locator(".badge.bad")).to_have_text("Not up to date")
    expect(acme.locator(".countdown")).to_have_class(re.compile("level-expired"))
    expect(acme.locator(".last-error")).to_contain_text("the SAS token expired on")
    shots.take(page, "destination-failing")

    acme.get_by_role("link", name="1 failed").click()
    row = page.locator(f"tr[data-batch='{batch_id}']")
    expect(row).to_have_class(re.compile("row-failed"))
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row.locator("td.reason")).to_contain_text("the SAS token expired on")
    assert page.evaluate("""(id) => getComputedStyle(document.querySelector(`tr[data-batch='${id}']`))
        .backgroundColor""", batch_id) == "rgb(255, 235, 233)"  # red
    shots.take(page, "batches-failed")

    row.get_by_role("link", name=batch_id).click()
    expect(page.locator(".error-panel")).to_contain_text("the SAS token expired on")
    expect(page.locator(".error-panel")).to_contain_text("renew it and update the destination")
    shots.take(page, "batch-failed")

    make_destination(console.admin, azurite, fresh_container, "acme")  # the customer's new SAS, through the API
    page.get_by_role("button", name=f"Retry batch {batch_id}").click()
    expect(page.locator("#announce")).to_contain_text(f"Batch {batch_id} is pending and due now")
    page.get_by_role("button", name="Run export now").click()
    expect(page.locator("#announce")).to_contain_text("1 batch landed, 0 failed")
    expect(page.locator(".view-head .badge")).to_have_text("landed")
    expect(page.locator("table.files tbody tr")).to_have_count(1)
    shots.take(page, "batch-landed")
    assert console.state(batch_id) == "landed"
    assert len(jsonl_records(fresh_container)) == 6
    nav(page, "Destinations").click()
    expect(card(page, "acme").locator(".badge.good")).to_have_text("Up to date")
    assert watched.problems == []
    close(watched)
