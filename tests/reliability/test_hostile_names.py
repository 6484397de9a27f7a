"""Hostile names: destination ids, batch ids and blob prefixes with '..', '/', '%2e%2e', control characters,
overlong or odd text. Refused (422 for a destination, 404 for a batch; 404/405 when the path no longer
matches a route at all), never a 5xx, and nothing is stored: no destination document, no secret, no batch.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.services import Services
from tests.reliability.hostile_support import control_blobs, staged_or_state_blobs
from tests.shared.export_helpers import data_files, make_destination, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

# Written as they travel in the URL path (percent-encoded where a client would have to).
HOSTILE_IDS = [
    "..", "%2e%2e", "%2E%2E", "%2e", "..%2f..%2fetc", "%2e%2e%2f%2e%2e", "a%2fb", "a%5cb", "%5c..%5c",
    "%00", "acme%00", "a%0ab", "acme%0d%0aX-Injected:%201", "%09acme", "acme%20", "a%7fb", "ACME", "Acme",
    "acm%C3%A9", "%EF%BC%8E%EF%BC%8E", "%ff%fe", "a" * 64, "a" * 5000, "ab", "-", "a;b", "a:b", "%252e%252e",
    "acme.json", "%E2%80%AEacme", "a%20%2F..%2F",
]
REFUSED_STATUSES = {404, 405, 422}


def secrets_stored(services: Services) -> dict[str, str]:
    path = services.settings.local_secrets_path
    return json.loads(path.read_text())["secrets"] if path.exists() else {}


def assert_json_error(response: httpx.Response, statuses: set[int]) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    return dict(error)


@pytest.fixture
def sas_body(azurite: Azurite, fresh_container: ContainerClient) -> dict[str, Any]:
    token = container_sas(fresh_container.container_name)
    return sas_destination(azurite.account_url, fresh_container.container_name, token)


def test_hostile_destination_ids_are_refused_and_nothing_is_stored(
    api: httpx.Client, services: Services, sas_body: dict[str, Any]
) -> None:
    wrong = []
    for raw_id in HOSTILE_IDS:
        try:
            put = api.put(f"/api/destinations/{raw_id}", json=sas_body)
            error = assert_json_error(put, REFUSED_STATUSES)
            if put.status_code == 422:
                assert "destination id must be 3-63 characters" in error["message"]
            for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/test")]:
                assert_json_error(api.request(method, f"/api/destinations/{raw_id}{suffix}"), REFUSED_STATUSES)
            batch = api.post(f"/api/destinations/{raw_id}/batches", params={"type": "events"},
                             content=b'{"event":"e","ts":1700000000}',
                             headers={"content-type": "application/x-ndjson"})
            assert_json_error(batch, REFUSED_STATUSES)
            assert api.get("/api/batches", params={"destination_id": raw_id}).json()["batches"] == []
        except AssertionError as exc:
            wrong.append((raw_id[:40], str(exc)[:200]))
    assert wrong == []
    assert control_blobs(services) == []  # no destination document, no staged batch
    assert secrets_stored(services) == {}  # the SAS token was never written


HOSTILE_BATCH_IDS = [
    *HOSTILE_IDS,
    "b" + "0" * 31,  # the right shape, but no such batch
    "k" + "a" * 31,
    "B" + "0" * 31,
    "b" + "0" * 31 + "%2f..",
    "b" + "%D9%A1" * 31,  # Arabic-Indic digits: isalnum() but not ASCII
    "b" + "0" * 30 + "%00",
    "b" + "0" * 31 + ".json",
    "..%2fdestinations%2ffuzz",
]


def test_hostile_batch_ids_are_not_found_never_a_server_error(api: httpx.Client, services: Services) -> None:
    wrong = []
    for raw_id in HOSTILE_BATCH_IDS:
        for method, suffix in [("GET", ""), ("POST", "/retry")]:
            try:
                error = assert_json_error(api.request(method, f"/api/batches/{raw_id}{suffix}"), {404, 405})
                assert len(error["message"]) < 200  # an overlong id is not echoed whole
            except AssertionError as exc:
                wrong.append((method, raw_id[:40], str(exc)[:200]))
    assert wrong == []
    assert staged_or_state_blobs(services) == []


HOSTILE_PREFIXES = [
    "..", "../", "../x", "x/..", "x/../y", "x/../../y", "./x", "x/./y", ".", "/", "/abs", "a//b", "a\\b",
    "..\\x", "%2e%2e", "%2e%2e/x", "%2E%2E%2Fx", "x/%2e%2e/y", "%2e/x", "x%2f..%2fy", "%2fabs", "a%2f%2fb",
    "a%5cb", "a\u0000b", "a%00b", "a\nb", "a%0ab", "a\rb", "a\tb", "a\u007fb", "a\u202eb", "a\ufeffb",
    "a\u200bb", "x" * 513,
]


def test_hostile_prefixes_are_refused_and_nothing_is_stored(
    api: httpx.Client, services: Services, sas_body: dict[str, Any]
) -> None:
    wrong = []
    for prefix in HOSTILE_PREFIXES:
        response = api.put("/api/destinations/acme", json={**sas_body, "prefix": prefix})
        try:
            error = assert_json_error(response, {422})
            assert [detail["field"] for detail in error["details"]] == ["prefix"]
        except AssertionError as exc:
            wrong.append((prefix[:40], str(exc)[:200]))
    assert wrong == []
    assert control_blobs(services) == []
    assert secrets_stored(services) == {}


@pytest.mark.parametrize(
    ("prefix", "stored"),
    [
        ("%252e%252e", "%252e%252e/"),  # percent-encoded twice: the blob name holds the characters themselves
        ("a..b/c..", "a..b/c../"),  # dots inside a name are not path segments
        ("...", ".../"),
        ("\uff0e\uff0e/x", "\uff0e\uff0e/x/"),  # fullwidth full stops are not dots to Azure
        ("exports/ünï cödé", "exports/ünï cödé/"),
        ("x" * 512, "x" * 512 + "/"),
    ],
)
def test_odd_but_harmless_prefix_is_kept_literally_and_lands_under_it(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, prefix: str, stored: str
) -> None:
    dest = make_destination(api, azurite, fresh_container, dest_id="odd-prefix", prefix=prefix, compression="none")
    assert api.get(f"/api/destinations/{dest}").json()["prefix"] == stored
    post_batch(api, dest, list(sample_data.events(2)))
    assert api.post("/api/exports/run").json()["landed"] == 1
    names = [blob.name for blob in fresh_container.list_blobs()]
    assert names and all(name.startswith(stored + "events/") for name in names), names
    assert data_files(fresh_container)


HOSTILE_PAGE_TOKENS = [
    "garbage", "!!!", "*", "=", "/", "..", "../../destinations/", "states/", "2!96!MDAwMDI0IXN0YXRlcy8h", "~" * 2048,
    "a" * 2049, "\u0000", "a\nb", "é", "\ud7ff", "🙂", "%00", "a b", "states/b0.json\u0001",
]


def test_hostile_page_tokens_are_refused_never_a_server_error(api: httpx.Client, services: Services) -> None:
    """A cursor is sealed by the app (shared.control.cursors): whatever else is passed never reaches storage."""
    first = api.get("/api/batches", params={"next": ""})
    assert first.status_code == 200  # an empty token is the first page
    wrong = []
    for token in HOSTILE_PAGE_TOKENS:
        for path in ("/api/batches", "/api/destinations"):
            response = api.get(path, params={"next": token})
            try:
                error = assert_json_error(response, {422})
                assert error["details"][0]["field"] == "next"
            except AssertionError as exc:
                wrong.append((path, token[:20], response.status_code, str(exc)[:200]))
    assert wrong == []
