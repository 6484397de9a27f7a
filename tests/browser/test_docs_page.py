"""The docs page in a real browser (Debian's Chromium, driven by Playwright): Swagger UI renders every operation
from assets the app serves itself, with every request to another origin blocked, and, behind the Functions
host's key check (as in Azure), the key in `?code=` opens the page, its assets, the document and "Try it out".

Needs /usr/bin/chromium (`apt-get install -y chromium`; .ci/run installs it): without it these tests fail,
they do not skip. Playwright never downloads a browser here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright

from scripts.functions_host import FunctionKeyCheck
from shared.api.app import create_api
from tests.support.server import ApiServer

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_KEY = "admin-key-for-the-docs-page"
INTAKE_KEY = "intake-key-for-the-docs-page"
DOCUMENT = create_api(lambda: None).openapi()  # type: ignore[arg-type, return-value]
OPERATION_IDS = sorted(op["operationId"] for methods in DOCUMENT["paths"].values() for op in methods.values())


def stub_services() -> Any:
    """Enough for GET /api/batches/{id} with an id that cannot exist: control storage has no batch."""
    return SimpleNamespace(control=SimpleNamespace(get=lambda name: None))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`); "
                               "the browser tests need it and never download a browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=["azure", "local"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """The whole API (as `make serve` serves it): behind the host's key check with both functions' keys
    ("azure"), or open ("local"). Yields (base URL, the key the page is opened with)."""
    app: Any = create_api(stub_services)
    if request.param == "azure":
        app = FunctionKeyCheck(app, {"admin": ADMIN_KEY, "intake": INTAKE_KEY})
    with ApiServer(app) as server:
        yield server.base_url, ADMIN_KEY if request.param == "azure" else None


@dataclass
class Traffic:
    origin: str
    outside: list[str] = field(default_factory=list)  # blocked: another origin
    inside: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors, page errors, failed requests

    def route(self, route: Route) -> None:
        url = route.request.url
        if f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != self.origin:
            self.outside.append(url)
            route.abort("blockedbyclient")
        else:
            self.inside.append(route.request)
            route.continue_()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")


def open_docs(browser: Browser, base_url: str, key: str | None) -> tuple[Page, Traffic]:
    page = browser.new_page()
    traffic = Traffic(base_url)
    page.route("**/*", traffic.route)
    page.on("console", traffic.console)
    page.on("pageerror", lambda error: traffic.problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: traffic.problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: traffic.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(f"{base_url}/api/docs" + (f"?code={key}" if key else ""))
    page.wait_for_selector(".opblock", timeout=20_000)
    return page, traffic


def test_swagger_ui_renders_every_operation_from_the_apps_own_assets_with_other_origins_blocked(
    browser: Browser, served: tuple[str, str | None]
) -> None:
    base_url, key = served
    page, traffic = open_docs(browser, base_url, key)
    try:
        assert page.locator(".opblock").count() == len(OPERATION_IDS)
        shown = sorted(page.locator(".opblock-summary-operation-id").all_inner_texts())
        assert shown == OPERATION_IDS
        assert page.locator(".info .title").inner_text().startswith("Azure Blob export")
        assert {tag.lower() for tag in page.locator(".opblock-tag-section h3 .nostyle span").all_inner_texts()} == {
            "destinations", "batches", "exports"}
        assert traffic.outside == []  # nothing was even asked of another origin (no CDN, no validator badge)
        asked = {urlsplit(r.url).path for r in traffic.inside}
        assert {"/api/docs", "/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css", "/api/docs/init.js",
                "/api/openapi.json"} <= asked
        if key is not None:  # in Azure the host asks each request for the key: the page carries it on
            for request in traffic.inside:
                assert parse_qs(urlsplit(request.url).query).get("code") == [key], request.url
            assert key not in page.locator("body").inner_text()  # in the address bar, not printed on the page
        assert traffic.problems == []
    finally:
        page.close()


def test_authorize_lists_both_keys_and_the_pages_key_opens_try_it_out(
    browser: Browser, served: tuple[str, str | None]
) -> None:
    base_url, key = served
    page, traffic = open_docs(browser, base_url, key)
    try:
        page.locator(".auth-wrapper .authorize").click()
        names = page.locator(".modal-ux .auth-container h4 code").all_inner_texts()
        assert sorted(names) == ["admin_key", "admin_key_in_query", "intake_key", "intake_key_in_query"]
        if key is not None:  # the admin operations are authorized with the page's own key
            authorized = page.locator(".modal-ux .auth-container", has_text="admin_key_in_query")
            assert "Logout" in authorized.inner_text()
        page.locator(".modal-ux .close-modal").click()

        operation = page.locator(".opblock", has=page.locator(".opblock-summary-operation-id", has_text="getBatch"))
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        operation.locator("input[placeholder='batch_id']").fill("nope")
        operation.locator(".execute").click()
        status = operation.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=10_000)
        # 404 from the app itself: the key check let it through (a missing key would be the host's 401).
        assert status.inner_text().split() == ["404", "Undocumented"]  # documented as 4XX
        answer = operation.locator(".live-responses-table tbody .response-col_description").inner_text()
        assert "does not exist" in answer
        assert traffic.outside == []
    finally:
        page.close()
