"""The console at its trust boundaries, in Chromium: API text holding markup (a destination's prefix, the files it
names, an error message echoing a batch id from a link someone sent) shows as text and runs nothing; the page's
policy refuses HTML from strings outright. Locally, with no LOCAL_ADMIN_KEY, no key is asked. A new operator's
first screen says what to do first, on a phone, and its form creates the first destination with the keyboard
alone; every control is labelled and focus is visible. (Helpers: test_console.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from azure.storage.blob import ContainerClient
from playwright.sync_api import Browser, expect

from shared.services import Services
from tests.browser.test_console import (
    PHONE,
    Console,
    Served,
    Shots,
    browser,  # noqa: F401 (a fixture)
    card,
    close,
    console_for,
    events,
    open_page,
    serve,
    shots,  # noqa: F401 (a fixture)
)
from tests.shared.export_helpers import make_destination, post_batch
from tests.support import secret_watch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas

# Each would set window.pwned (or open a dialog) if it ever became markup.
HOSTILE_PREFIX = "<img src=x onerror=window.pwned=1>/<script>window.pwned=2</script>/"
HOSTILE_BATCH_ID = "<img src=x onerror=window.pwned=3><svg onload=alert(4)>"


@pytest.fixture(scope="module")
def open_server() -> Iterator[Served]:
    """The app with no key check: `make serve` without LOCAL_ADMIN_KEY."""
    yield from serve(keyed=False)


@pytest.fixture
def local(open_server: Served, services: Services) -> Iterator[Console]:
    yield from console_for(open_server, services)


def test_markup_in_api_text_shows_as_text_and_runs_nothing(
    browser: Browser, local: Console, azurite: Azurite, fresh_container: ContainerClient, shots: Shots,  # noqa: F811
) -> None:
    make_destination(local.admin, azurite, fresh_container, "acme", prefix=HOSTILE_PREFIX)
    batch_id = post_batch(local.intake, "acme", events(4))["batch_id"]
    local.drain(lambda: local.state(batch_id) == "landed")

    watched = open_page(browser, local)
    page = watched.page
    acme = card(page, "acme")
    expect(acme).to_contain_text(HOSTILE_PREFIX)  # the prefix, character for character
    page.goto(f"{local.url}#batch/{batch_id}")
    files = page.locator("table.files tbody tr")
    expect(files).to_have_count(1)
    expect(files.first).to_contain_text(f"{HOSTILE_PREFIX}events/date=")
    expect(page.locator(".facts")).to_contain_text(f"{HOSTILE_PREFIX}events/_manifests/")
    shots.take(page, "hostile-files")

    # A link an attacker sends an operator: the API's 404 echoes the id, and the console shows it as text.
    page.goto(f"{local.url}#batch/{quote(HOSTILE_BATCH_ID, safe='')}")
    expect(page.locator("#view .last-error")).to_have_text(f"batch '{HOSTILE_BATCH_ID}' does not exist")
    expect(page.locator("#view h2")).to_have_text(f"Batch {HOSTILE_BATCH_ID}")
    shots.take(page, "hostile-link")

    assert page.evaluate("() => window.pwned") is None
    assert watched.dialogs == []
    assert page.locator("script").count() == 1  # the console's own module
    assert page.locator("img").count() == 1  # the brand icon
    assert page.locator("#view svg[onload], #view [onerror]").count() == 0
    not_found = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert [p for p in watched.problems if not_found not in p] == [] and watched.outside == []
    # The page's policy requires Trusted Types with no policy: HTML from a string is refused outright.
    refused = page.evaluate("""() => { try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>');
        return 'accepted'; } catch (error) { return error.name; } }""")
    assert refused == "TypeError"
    assert any("requires 'TrustedHTML' assignment" in p for p in watched.problems)
    close(watched)


def test_a_new_operator_is_told_what_to_do_first_and_creates_the_first_destination_with_the_keyboard(
    browser: Browser, local: Console, azurite: Azurite, fresh_container: ContainerClient, shots: Shots,  # noqa: F811
) -> None:
    watched = open_page(browser, local, viewport=PHONE)  # locally with no key: none is asked
    page = watched.page
    empty = page.locator(".empty-state")
    expect(empty).to_contain_text("No destination yet. Start here:")
    expect(empty.locator("ol.steps li")).to_have_count(3)
    expect(empty.locator("pre.code")).to_contain_text(f'curl -X PUT "{local.base_url}/api/destinations/acme"')
    assert page.locator("#key-form").is_hidden()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    shots.take(page, "empty-state-phone")

    # Every control is labelled, every button has words.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter((node) => node.type !== 'hidden' && node.labels.length === 0).map((node) => node.name)""")
    assert unlabelled == []
    nameless = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter((node) => !(node.getAttribute('aria-label') || node.textContent.trim())).length""")
    assert nameless == 0

    token = container_sas(fresh_container.container_name, delete=True)
    page.keyboard.press("Tab")
    for _ in range(12):  # from the top of the page to the form's first field, by Tab alone
        if page.evaluate("() => document.activeElement.name") == "id":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.name") == "id"
    for value in ["acme", azurite.account_url, fresh_container.container_name, "exports"]:
        page.keyboard.type(value)
        page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # format: JSON lines
    page.keyboard.press("Tab")  # authentication: SAS token
    page.keyboard.type(token)
    page.keyboard.press("Tab")  # prove the credentials first: checked
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Save destination"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    page.keyboard.press("Enter")

    expect(page.locator("#announce")).to_contain_text("Destination acme saved: its credentials were proven")
    acme = card(page, "acme")
    expect(acme).to_contain_text(f"{fresh_container.container_name} / exports/")
    expect(acme.locator(".badge.good")).to_have_text("Up to date")
    secret_watch.observe("the console page after saving a destination", page.content())
    assert token not in page.content()
    shots.take(page, "first-destination-phone")
    assert local.admin.get("/api/destinations/acme").json()["prefix"] == "exports/"

    # The form refuses with the API's words, next to the form and in the live region.
    page.get_by_text("Add a destination").click()
    form = page.get_by_role("form", name="Add a destination")
    form.get_by_label("Destination id").fill("other")
    form.get_by_label("Storage account or endpoint").fill("https://example.com/container")
    form.get_by_label("Container").fill("c1")
    form.get_by_label("SAS token").fill("sv=2024-01-01&sp=rw&sig=abc")
    form.get_by_role("button", name="Save destination").click()
    expect(form.get_by_role("alert")).to_contain_text(re.compile(r"Not saved: the destination is invalid"))
    expect(page.locator("#announce")).to_have_class(re.compile("is-error"))
    assert watched.problems == [p for p in watched.problems if "status of 422" in p]
    close(watched)
