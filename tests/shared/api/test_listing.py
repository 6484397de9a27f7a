"""Listings through the real HTTP API (issue 12, item 3): batches newest first, destinations in id order, each
paged with an opaque cursor bound to its listing; a cursor the listing never gave out is a 422, not a silent
restart from the first page."""

from __future__ import annotations

import base64
import time
from itertools import chain
from typing import Any

import httpx
from azure.storage.blob import ContainerClient

from shared.control import batch_index, batches, cursors, transitions
from shared.errors import DestinationProblem
from shared.services import Services
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

EVENT = b'{"event":"signup","ts":1700000000}\n'


def destination(api: httpx.Client, azurite: Azurite, container: ContainerClient, name: str) -> None:
    body = sas_destination(azurite.account_url, container.container_name, container_sas(container.container_name))
    assert api.put(f"/api/destinations/{name}?verify=false", json=body).status_code == 201


def post_batches(api: httpx.Client, name: str, count: int) -> list[str]:
    """`count` batches, every other one with an Idempotency-Key (its id does not sort by time): ids in the
    order they were created."""
    ids = []
    for n in range(count):
        headers = {"content-type": "application/x-ndjson"}
        if n % 2:
            headers["idempotency-key"] = f"order-{n}-{time.time_ns()}"
        posted = api.post(f"/api/destinations/{name}/batches?type=events", content=EVENT, headers=headers)
        assert posted.status_code == 202, posted.text
        ids.append(posted.json()["batch_id"])
        time.sleep(0.002)  # creation times a few milliseconds apart
    return ids


def pages(api: httpx.Client, path: str, key: str, **query: Any) -> tuple[list[list[str]], list[str]]:
    """Every page of a listing, followed by its cursors: (the ids of each page, the cursors given out)."""
    ids: list[list[str]] = []
    cursors: list[str] = []
    params = dict(query)
    while True:
        answer = api.get(path, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids.append([item["batch_id" if key == "batches" else "id"] for item in page[key]])
        if page["next"] is None:
            return ids, cursors
        cursors.append(page["next"])
        params = {**query, "next": page["next"]}


def test_empty_control_storage_lists_from_the_index_at_once(services: Services) -> None:
    assert services.control.get(batch_index.BACKFILL) is None
    assert batch_index.is_complete(services.control, batches.STATES_PREFIX)
    assert services.control.get(batch_index.BACKFILL).data["complete"] is True  # type: ignore[union-attr]


def test_batches_are_listed_newest_first_page_after_page(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    destination(api, azurite, fresh_container, "acme")
    destination(api, azurite, fresh_container, "globex")
    acme = post_batches(api, "acme", 7)
    globex = post_batches(api, "globex", 2)

    acme_pages, _ = pages(api, "/api/batches", "batches", destination_id="acme", limit=3)
    assert acme_pages == [acme[::-1][:3], acme[::-1][3:6], acme[::-1][6:]]
    every, _ = pages(api, "/api/batches", "batches", limit=4)
    assert list(chain.from_iterable(every)) == globex[::-1] + acme[::-1]
    pending, _ = pages(api, "/api/batches", "batches", state="pending", limit=5)
    assert list(chain.from_iterable(pending)) == globex[::-1] + acme[::-1]
    assert pages(api, "/api/batches", "batches", state="landed")[0] == [[]]


def test_a_cursor_is_opaque_and_only_its_own_listing_takes_it(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    destination(api, azurite, fresh_container, "acme")
    destination(api, azurite, fresh_container, "globex")
    ids = post_batches(api, "acme", 3)
    _, cursors = pages(api, "/api/batches", "batches", destination_id="acme", limit=1)
    cursor = cursors[0]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    for storage_word in (b"index", b"states", b"acme", ids[1].encode(), b"devstoreaccount1"):
        assert storage_word not in decoded and storage_word.decode() not in cursor

    tampered = cursor[:20] + ("A" if cursor[20] != "A" else "B") + cursor[21:]
    _, destination_cursors = pages(api, "/api/destinations", "destinations", limit=1)
    refused = {
        "edited": {"destination_id": "acme", "next": tampered},
        "other filters": {"destination_id": "globex", "next": cursor},
        "no filters": {"next": cursor},
        "another listing's": {"destination_id": "acme", "next": destination_cursors[0]},
        "made up": {"destination_id": "acme", "next": "states/b20261201"},
        "too long": {"destination_id": "acme", "next": "A" * 5000},
    }
    for why, params in refused.items():
        answer = api.get("/api/batches", params=params)
        assert answer.status_code == 422, (why, answer.text)
        error = answer.json()["error"]
        assert error["details"][0]["field"] == "next", why
        assert "earlier page of this same listing" in error["message"], why
    assert api.get("/api/destinations", params={"next": cursor}).status_code == 422
    assert api.get("/api/batches", params={"destination_id": "acme", "next": cursor}).status_code == 200


def test_destinations_are_paged_in_id_order(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    names = [f"customer-{n:02d}" for n in range(7)]
    for name in reversed(names):
        destination(api, azurite, fresh_container, name)
    listed, cursors = pages(api, "/api/destinations", "destinations", limit=3)
    assert listed == [names[:3], names[3:6], names[6:]] and len(cursors) == 2
    assert pages(api, "/api/destinations", "destinations")[0] == [names]
    for limit in (0, 1001, -1):
        answer = api.get("/api/destinations", params={"limit": limit})
        assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "limit"


def test_an_open_batch_has_its_open_marker_alone_and_is_listed_as_it_is_now(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    destination(api, azurite, fresh_container, "acme")
    assert api.get("/api/batches").json()["batches"] == []  # the index is complete (nothing to index from before)
    first, started, last = post_batches(api, "acme", 3)
    state = batches.get_state(services.control, started)
    batches.save_state(services.control, transitions.start_attempt(state, batches.now_utc()), previous="pending")
    key = batch_index.newest_first_key(state.created_at, started)
    index = {item.name: item.metadata.get("state") for item in services.control.list("index/", with_metadata=True)
             if item.name != batch_index.BACKFILL}
    assert index[batch_index.open_marker("acme", started, state.created_at)] == "running"
    assert len(index) == 3 and all(name.startswith(f"{batch_index.OPEN}acme/") for name in index)  # nothing more
    assert key in batch_index.open_marker("acme", started, state.created_at)

    def shown(**query: Any) -> dict[str, str]:
        answer = api.get("/api/batches", params=query)
        assert answer.status_code == 200, answer.text
        return {item["batch_id"]: item["state"] for item in answer.json()["batches"]}

    expected = {last: "pending", started: "running", first: "pending"}
    assert shown() == expected and shown(destination_id="acme") == expected
    assert shown(state="running") == shown(destination_id="acme", state="running") == {started: "running"}
    assert shown(destination_id="acme", state="pending") == {last: "pending", first: "pending"}
    assert shown(state="pending") == {last: "pending", first: "pending"}


def test_every_batch_is_listed_once_newest_first_while_batches_finish_and_come_back_between_pages(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    """The unfiltered listing merges finished batches' `all` markers with open batches' state markers (intake
    writes no `all` marker): pages of two, with batches failing and one retried between pages."""
    control = services.control
    destination(api, azurite, fresh_container, "acme")
    assert api.get("/api/batches").json()["batches"] == []  # the index is complete (nothing to index from before)
    ids = post_batches(api, "acme", 7)  # ids[6] is the newest
    expired = DestinationProblem("the SAS token expired; renew it", code="sas_expired")

    def fail(batch_id: str) -> None:
        state = batches.get_state(control, batch_id)
        running = transitions.start_attempt(state, batches.now_utc())
        batches.save_state(control, running, previous="pending")
        batches.save_state(control, transitions.fail(running, expired, batches.now_utc()), previous="running")

    fail(ids[5])
    fail(ids[2])
    batches.retry_batch(control, ids[2])  # open again: its `all` marker still says failed, its state marker pending
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get("/api/batches", params=params).json()
        seen += page["batches"]
        if len(seen) == 2:
            fail(ids[0])  # on a later page: listed as it is when that page is read
            fail(ids[6])  # on a page read already: not listed again
        if page["next"] is None:
            break
        params["next"] = page["next"]
    assert [b["batch_id"] for b in seen] == ids[::-1]
    assert {b["batch_id"]: b["state"] for b in seen} == {
        ids[6]: "pending", ids[5]: "failed", ids[4]: "pending", ids[3]: "pending", ids[2]: "pending",
        ids[1]: "pending", ids[0]: "failed"}
    assert {b["destination_id"] for b in seen} == {"acme"} and all(b["created_at"] for b in seen)
    # `all` markers: the finished batches' (and the retried one's, left from when it failed)
    assert {batch_index.batch_id_of(item.name) for item in control.list(batch_index.ALL)} == {ids[0], ids[2], ids[5],
                                                                                               ids[6]}


def test_a_cursor_the_previous_version_gave_out_for_a_listing_read_elsewhere_now_is_refused(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    """`?state=pending` read `state/pending/` markers page by page; it reads the open markers now. Its cursor
    from before is a 422 (start again), not a token read against another listing."""
    destination(api, azurite, fresh_container, "acme")
    post_batches(api, "acme", 2)
    listing = "batches?state=pending&destination_id="
    old = cursors.seal(services.control, cursors.Place("index/batches/state/pending/", "a-token"), listing)
    answer = api.get("/api/batches", params={"state": "pending", "next": old})
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "next"
    assert len(api.get("/api/batches", params={"state": "pending"}).json()["batches"]) == 2
