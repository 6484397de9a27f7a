"""Security of a destination save, through the real HTTP server: a destination uses only secrets it may use,
a record is always paired with the exact secret it was saved with, and a SAS for the wrong resource is refused
before anything is stored (issue 9, items 2, 4 and 5)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobSasPermissions, ContainerClient, generate_blob_sas
from pytest_httpserver import HTTPServer

from shared.destinations.sas import parse_sas
from shared.secrets.cache import CachedSecrets
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.hostile_support import report
from tests.shared.export_helpers import blob_names, make_destination
from tests.support import secret_watch
from tests.support.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from tests.support.keyvault import FakeKeyVault
from tests.support.sas import container_sas, sas_destination


@pytest.fixture
def attacker(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    """A loopback "storage endpoint" that records whatever reaches it (allowed in development)."""
    httpserver.expect_request(re.compile(".*")).respond_with_data("", status=201)
    yield httpserver


def attacker_body(server: HTTPServer, secret_name: str) -> dict[str, Any]:
    return {"endpoint": server.url_for("/devstoreaccount1").rstrip("/"), "container": "loot",
            "auth": {"type": "sas", "secret_name": secret_name}}


def without_name(response: httpx.Response, name: str) -> dict[str, Any]:
    """The error with the (caller's own) name taken out, to compare two answers."""
    return dict(json.loads(response.text.replace(name, "<name>")))


# --- Item 2: a destination names only its own secret or a customer's ------------------------------------------


def test_a_destination_cannot_borrow_another_destinations_secret(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, attacker: HTTPServer
) -> None:
    make_destination(api, azurite, fresh_container, dest_id="victim-a")
    victims = api.get("/api/destinations/victim-a").json()["auth"]["secret_name"]
    missing = api.put("/api/destinations/thief-b", json=attacker_body(attacker, "no-such-secret"))
    assert missing.status_code == 422, missing.text

    for borrowed in (victims, victims.upper(), "export-dest-victim-a"):  # its name, in capitals, the older form
        response = api.put("/api/destinations/thief-b", json=attacker_body(attacker, borrowed))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "auth.secret_name"
        assert without_name(response, borrowed) == without_name(missing, "no-such-secret")  # one answer for both
    assert api.get("/api/destinations/thief-b").status_code == 404
    assert attacker.log == []  # the victim's SAS never left the app
    report("secret_name of another destination", request="PUT thief-b {secret_name: <victim's>}",
           status=422, same_answer_as_missing=True, requests_to_attacker=0)


def test_a_destination_may_name_a_customer_secret_or_its_own(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    token = container_sas(fresh_container.container_name, delete=True)
    services.secrets.set("customer-sas-1", token)
    body = {**sas_destination(azurite.account_url, fresh_container.container_name, token),
            "auth": {"type": "sas", "secret_name": "customer-sas-1"}}
    assert api.put("/api/destinations/named", json=body).status_code == 201

    make_destination(api, azurite, fresh_container, dest_id="own")
    own = api.get("/api/destinations/own").json()["auth"]["secret_name"]
    body["auth"] = {"type": "sas", "secret_name": own}
    response = api.put("/api/destinations/own", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["auth"]["secret_name"] == own


def test_customer_secret_prefix_limits_the_names_a_destination_may_use(
    settings: Settings, api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    _api_server: tuple[str, Any],
) -> None:
    strict = build_services(settings.model_copy(update={"customer_secret_prefix": "cust-"}), secrets=services.secrets)
    _api_server[1].value = strict
    token = container_sas(fresh_container.container_name, delete=True)
    services.secrets.set("other-team-sas", token)
    services.secrets.set("cust-acme-sas", token)
    body = sas_destination(azurite.account_url, fresh_container.container_name, token)

    outside = api.put("/api/destinations/acme", json={**body, "auth": {"type": "sas", "secret_name": "other-team-sas"}})
    missing = api.put("/api/destinations/acme", json={**body, "auth": {"type": "sas", "secret_name": "cust-nothing"}})
    assert outside.status_code == missing.status_code == 422
    assert "starts with 'cust-'" in outside.json()["error"]["message"]
    assert without_name(outside, "other-team-sas") == without_name(missing, "cust-nothing")
    inside = api.put("/api/destinations/acme", json={**body, "auth": {"type": "sas", "secret_name": "cust-acme-sas"}})
    assert inside.status_code == 201, inside.text


# --- Item 5: a record and its secret always match ---------------------------------------------------------------


def stored_secrets(settings: Settings) -> dict[str, str]:
    return dict(json.loads(settings.local_secrets_path.read_text())["secrets"])


def test_concurrent_saves_always_pair_a_record_with_its_own_secret(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    container = fresh_container.container_name
    outcomes: list[int] = []
    for round_ in range(20):
        # Two tokens that differ in expiry, so the stored value says which save it came from.
        tokens = [container_sas(container, delete=True,
                                expiry=datetime.now(UTC) + timedelta(days=30, hours=round_, minutes=side))
                  for side in (1, 2)]
        barrier = threading.Barrier(2)

        def save(token: str, barrier: threading.Barrier = barrier) -> int:
            with httpx.Client(base_url=str(api.base_url), timeout=60) as client:
                barrier.wait()
                return client.put("/api/destinations/raced",
                                  json=sas_destination(azurite.account_url, container, token)).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(save, tokens))
        assert set(statuses) <= {200, 201, 409} and set(statuses) & {200, 201}, statuses
        outcomes += statuses

        record = services.destinations.get_record("raced")
        name = str(record.secret_name)
        value = services.secrets.store.get_secret(name)
        assert value in tokens
        assert record.auth.sas is not None
        assert parse_sas(value).to_public()["expiry"] == record.auth.sas.expiry
        mine = [n for n in stored_secrets(services.settings) if n.startswith("export-dest-raced")]
        assert mine == [name], "the loser's and the replaced secrets are deleted"
    report("concurrent PUTs of one destination", rounds=20, conflicts=outcomes.count(409),
           mismatched_secrets=0, leftover_secrets=0)


def test_a_deleted_destination_can_be_recreated_at_once_with_key_vault(
    settings: Settings, api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
    fake_key_vault: FakeKeyVault, _api_server: tuple[str, Any],
) -> None:
    """Key Vault keeps a deleted secret, soft-deleted, for 90 days: a name per save never collides with it."""
    vaulted = build_services(settings, secrets=CachedSecrets(fake_key_vault.secret_store(), 300))
    _api_server[1].value = vaulted
    make_destination(api, azurite, fresh_container, dest_id="again")
    first = api.get("/api/destinations/again").json()["auth"]["secret_name"]
    assert api.delete("/api/destinations/again").status_code == 204
    assert fake_key_vault.is_deleted(first)
    make_destination(api, azurite, fresh_container, dest_id="again")
    assert api.get("/api/destinations/again").json()["auth"]["secret_name"] != first


# --- Item 4: only a container SAS for this container is saved --------------------------------------------------


def test_a_blob_sas_is_refused_at_save(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    token = generate_blob_sas(ACCOUNT_NAME, fresh_container.container_name, "one.txt", account_key=ACCOUNT_KEY,
                              permission=BlobSasPermissions(read=True, write=True),
                              expiry=datetime.now(UTC) + timedelta(days=1))
    secret_watch.register(token, "blob SAS token")
    response = api.put("/api/destinations/blobsas",
                       json=sas_destination(azurite.account_url, fresh_container.container_name, token))
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "auth.sas_token"
    assert "a single blob (sr=b), not a container" in detail["message"]
    assert api.get("/api/destinations/blobsas").status_code == 404


def test_a_sas_for_another_container_is_refused_at_save_with_the_likely_cause(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    token = container_sas("some-other-container", delete=True)
    body = sas_destination(azurite.account_url, fresh_container.container_name, token)
    response = api.put("/api/destinations/wrongbox", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert error["message"].startswith("the destination was not saved: ")
    assert f"made for another container than '{fresh_container.container_name}'" in error["message"]
    assert "?verify=false" in error["message"]
    assert api.get("/api/destinations/wrongbox").status_code == 404
    assert blob_names(fresh_container) == []

    skipped = api.put("/api/destinations/wrongbox", params={"verify": "false"}, json=body)
    assert skipped.status_code == 201, skipped.text
    report("SAS for another container", request="PUT (verify on by default)", status=400,
           code=error["code"], saved=False)


def test_the_probe_at_save_leaves_nothing_behind(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    make_destination(api, azurite, fresh_container, dest_id="tidy", prefix="exports/")
    assert blob_names(fresh_container) == []
