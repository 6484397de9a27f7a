"""The console's actions on the API of issue 17, in Chromium behind the host's key check: pause a destination with
a reason (its batches are accepted but not exported), resume it (they land), and discard a failed batch (it stays
failed, with the date, and no longer makes its destination not up to date). Each result is said in the live
region. (Helpers: test_console.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from playwright.sync_api import Browser, expect

from shared.services import Services
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
from tests.shared.export_helpers import jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite


@pytest.fixture
def console(keyed_server: Served, services: Services) -> Iterator[Console]:  # noqa: F811
    yield from console_for(keyed_server, services)


def test_pause_with_a_reason_then_resume_and_the_batch_accepted_meanwhile_lands(
    browser: Browser, console: Console, azurite: Azurite, fresh_container: ContainerClient, shots: Shots,  # noqa: F811
) -> None:
    make_destination(console.admin, azurite, fresh_container, "acme")
    watched = open_page(browser, console)
    page = watched.page
    enter_key(page)
    acme = card(page, "acme")
    acme.get_by_role("button", name="Pause destination acme").click()
    reason = acme.get_by_label("Reason (optional)")
    expect(reason).to_be_focused()
    reason.fill("the customer is rotating the storage account's keys")
    acme.get_by_role("button", name="Pause exports").click()
    expect(page.locator("#announce")).to_contain_text("Destination acme is paused")
    acme = card(page, "acme")
    # Its own badge (a paused destination may also show "Not up to date", depending on when its status arrives).
    expect(acme.locator(".card-head .badge.bad", has_text="Paused")).to_have_count(1)
    expect(acme.locator(".paused-reason")).to_contain_text(re.compile(  # "0 s ago", or more on a busy machine
        r"Paused by an operator \d+ s ago: the customer is rotating the storage account's keys"))
    shots.take(page, "paused")

    batch_id = post_batch(console.intake, "acme", events(5))["batch_id"]
    queue = console.services.export_queue
    assert queue is not None
    console.drain(lambda: queue.approximate_length() == 0)  # the consumer drops a paused destination's message
    assert console.state(batch_id) == "pending" and jsonl_records(fresh_container) == []

    acme.get_by_role("button", name="Resume destination acme").click()
    expect(page.locator("#announce")).to_contain_text("Destination acme is resumed")
    expect(card(page, "acme").locator(".card-head .badge.bad", has_text="Paused")).to_have_count(0)
    console.drain(lambda: console.state(batch_id) == "landed")
    page.get_by_role("button", name="Refresh").click()
    expect(card(page, "acme")).to_contain_text("1 landed in 24 h")
    assert len(jsonl_records(fresh_container)) == 5
    assert watched.problems == []
    close(watched)


def test_discard_a_failed_batch_and_its_destination_is_up_to_date_again(
    browser: Browser, console: Console, azurite: Azurite, blob_service: BlobServiceClient, shots: Shots,  # noqa: F811
) -> None:
    container = blob_service.create_container("gone-for-the-console")
    make_destination(console.admin, azurite, container, "acme")
    container.delete_container()  # the customer deleted it: the batch fails, with the reason
    batch_id = post_batch(console.intake, "acme", events(3))["batch_id"]
    console.drain(lambda: console.state(batch_id) == "failed")

    watched = open_page(browser, console, fragment="#batches?state=failed")
    page = watched.page
    enter_key(page)
    row = page.locator(f"tr[data-batch='{batch_id}']")
    expect(row.locator("td.reason")).to_contain_text("does not exist")
    row.get_by_role("button", name=f"Discard batch {batch_id}").click()
    expect(page.locator("#announce")).to_contain_text(f"Batch {batch_id} is discarded")
    expect(row.locator("td.reason .badge")).to_contain_text("discarded")
    expect(row.get_by_role("button", name=f"Discard batch {batch_id}")).to_have_count(0)
    expect(row.get_by_role("button", name=f"Retry batch {batch_id}")).to_be_visible()  # still possible
    shots.take(page, "discarded")

    discarded = console.admin.get(f"/api/batches/{batch_id}").json()
    assert discarded["state"] == "failed" and discarded["discarded_at"] is not None
    page.get_by_role("link", name=batch_id).click()
    expect(page.locator("#view")).to_contain_text(re.compile(r"Discarded on \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Destinations").click()
    expect(card(page, "acme").locator(".badge.good")).to_have_text("Up to date")
    assert watched.problems == []
    close(watched)


def test_batches_page_by_page_with_the_api_cursors(
    browser: Browser, console: Console, azurite: Azurite, fresh_container: ContainerClient,  # noqa: F811
) -> None:
    make_destination(console.admin, azurite, fresh_container, "acme")
    posted = [post_batch(console.intake, "acme", events(1, i))["batch_id"] for i in range(27)]  # a page is 25
    watched = open_page(browser, console, fragment="#batches?destination=acme")
    page = watched.page
    enter_key(page)
    rows = page.locator("table.batches tbody tr")
    expect(rows).to_have_count(25)
    first_page = rows.evaluate_all("(rows) => rows.map((row) => row.dataset.batch)")
    assert first_page == posted[::-1][:25]  # newest first
    expect(page.get_by_role("button", name="Newer batches")).to_be_disabled()
    page.get_by_role("button", name="Older batches").click()
    expect(rows).to_have_count(2)
    expect(page.locator(".pager")).to_contain_text("Page 2 · 2 batches")
    assert rows.evaluate_all("(rows) => rows.map((row) => row.dataset.batch)") == posted[1::-1]
    expect(page.get_by_role("button", name="Older batches")).to_be_disabled()
    expect(page.get_by_role("heading", name="Batches")).to_be_focused()  # the new page is announced by its heading
    page.get_by_role("button", name="Newer batches").click()
    expect(rows).to_have_count(25)
    expect(page.locator(".pager")).to_contain_text("Page 1 · 25 batches")
    assert watched.problems == []
    close(watched)
