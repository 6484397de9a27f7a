"""Natural mistakes in a destination, named by their likely cause, through the real HTTP API (issue 12, item 2).

Each is refused with words that say what to give instead, and nothing is saved: no destination document, no
secret in the store, nothing written to the container.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.destinations.record import DestinationRecord, StoredAuth
from shared.destinations.service import destination_blob
from shared.services import Services
from tests.shared.export_helpers import blob_names, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"


def assert_nothing_saved(api: httpx.Client, services: Services, destination_id: str) -> None:
    assert api.get(f"/api/destinations/{destination_id}").status_code == 404
    assert services.control.get(destination_blob(destination_id)) is None
    store = services.settings.local_secrets_path
    assert not store.exists() or json.loads(store.read_text())["secrets"] == {}


def refusal(response: httpx.Response, field: str) -> str:
    """The message a 422 gives for ``field``."""
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == [field], details
    return str(details[0]["message"])


# --- the portal's container URL pasted as the endpoint ------------------------------------------------------------


def test_a_container_url_pasted_as_the_endpoint_is_refused_naming_the_container(
    api: httpx.Client, services: Services, fresh_container: ContainerClient
) -> None:
    token = container_sas(fresh_container.container_name)
    body = sas_destination("https://acct.blob.core.windows.net/mycontainer", "mycontainer", token)
    # verify=false: the save itself must refuse it, not the probe (which cannot reach that account from here)
    response = api.put("/api/destinations/pasted", params={"verify": "false"}, json=body)
    message = refusal(response, "endpoint")
    assert "not a container's URL" in message
    assert "give the account endpoint (https://acct.blob.core.windows.net) and the container separately" in message
    assert "'mycontainer', the path's first segment, is likely the container" in message
    assert_nothing_saved(api, services, "pasted")


def test_a_container_sas_url_pasted_as_the_endpoint_is_refused_without_echoing_its_signature(
    api: httpx.Client, services: Services, fresh_container: ContainerClient
) -> None:
    token = container_sas(fresh_container.container_name)  # registered with the secret watch: never in a response
    pasted = f"https://acct.blob.core.windows.net/mycontainer/exports/?{token}"
    body = sas_destination(pasted, "mycontainer", token)
    response = api.put("/api/destinations/pasted", params={"verify": "false"}, json=body)
    message = refusal(response, "endpoint")
    assert "'mycontainer', the path's first segment, is likely the container" in message
    assert "a folder after the container goes in 'prefix'" in message
    assert "the SAS token (the text after '?') goes in auth.sas_token" in message
    sig = token.split("sig=", 1)[1].split("&", 1)[0]
    assert "sig=" not in response.text and sig not in response.text
    assert_nothing_saved(api, services, "pasted")


def test_an_emulator_container_url_is_refused_but_its_account_endpoint_is_taken(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """Azurite's endpoint holds the account in its path (/devstoreaccount1): one segment more is the container."""
    name = fresh_container.container_name
    token = container_sas(name)
    response = api.put("/api/destinations/pasted", json=sas_destination(f"{azurite.account_url}/{name}", name, token))
    message = refusal(response, "endpoint")
    assert f"give the account endpoint ({azurite.account_url}) and the container separately" in message
    assert f"'{name}', the path's first segment after the account, is likely the container" in message
    assert_nothing_saved(api, services, "pasted")
    assert blob_names(fresh_container) == []  # not even probed

    saved = api.put("/api/destinations/pasted", json=sas_destination(azurite.account_url, name, token))
    assert saved.status_code == 201, saved.text


# --- bearer tokens over plain http --------------------------------------------------------------------------------


TOKEN_AUTHS: list[dict[str, Any]] = [
    {"type": "managed_identity"},
    {"type": "service_principal", "tenant_id": TENANT, "client_id": CLIENT,
     "client_secret": f"sp-Secret~{uuid.uuid4().hex}"},
]


@pytest.mark.parametrize("auth", TOKEN_AUTHS, ids=[a["type"] for a in TOKEN_AUTHS])
def test_token_auth_to_an_http_endpoint_is_refused_at_save_with_the_reason(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, auth: dict[str, Any]
) -> None:
    name = fresh_container.container_name
    body = {"endpoint": azurite.account_url, "container": name, "auth": auth}  # http://127.0.0.1:<port>/...
    for params in ({}, {"verify": "false"}):
        message = refusal(api.put("/api/destinations/plain", params=params, json=body), "endpoint")
        assert "needs an https endpoint: the token would otherwise travel in clear text" in message
        assert_nothing_saved(api, services, "plain")
    # The same loopback http endpoint stays usable for local development with a SAS token.
    sas = sas_destination(azurite.account_url, name, container_sas(name))
    assert api.put("/api/destinations/plain", json=sas).status_code == 201


def test_a_token_destination_saved_over_http_before_the_rule_fails_its_batch_once_with_the_reason(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """Such a destination (saved by an older version) used to fail every export with "unexpected error:
    ValueError" and be retried; now its batch fails at once and says why."""
    now = "2026-11-20T00:00:00+00:00"
    record = DestinationRecord(
        id="legacy", account_url=azurite.account_url, container=fresh_container.container_name, prefix="",
        format="jsonl", compression="gzip", auth=StoredAuth(type="managed_identity"), created_at=now,
        updated_at=now, generation=uuid.uuid4().hex,
    )
    services.control.ensure_container()
    services.control.put(destination_blob("legacy"), record.to_json(), create_only=True)
    batch_id = post_batch(api, "legacy", list(sample_data.events(3)))["batch_id"]
    api.post("/api/exports/run")

    status = api.get(f"/api/batches/{batch_id}").json()
    assert status["state"] == "failed", status
    assert status["attempts"] == 1
    error = status["last_error"]
    assert error["code"] == "endpoint_not_https"
    assert "bearer tokens (managed_identity) are only sent over HTTPS" in error["message"]
    assert "ValueError" not in error["message"]
    assert blob_names(fresh_container) == []


# --- a SAS the storage account refuses ----------------------------------------------------------------------------


def assert_likely_causes_in_order(message: str, container: str) -> None:
    causes = [
        f"1) it was made for another container than '{container}'",
        "2) it was made for another storage account than the account at",
        "3) it has expired or was revoked",
        "or its signature is wrong",
    ]
    places = [message.find(cause) for cause in causes]
    assert -1 not in places and places == sorted(places), message
    for internal in ("AuthorizationFailure", "AuthenticationFailed", "StorageErrorCode", "forbidden"):
        assert internal not in message


def test_a_sas_refused_by_storage_names_the_likely_causes_in_order_at_save_probe_and_export(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    name = fresh_container.container_name
    body = sas_destination(azurite.account_url, name, container_sas("some-other-container"))

    at_save = api.put("/api/destinations/wrongbox", json=body)
    assert at_save.status_code == 400, at_save.text
    error = at_save.json()["error"]
    assert error["code"] == "authentication_failed"
    assert_likely_causes_in_order(error["message"], name)
    assert_nothing_saved(api, services, "wrongbox")

    assert api.put("/api/destinations/wrongbox", params={"verify": "false"}, json=body).status_code == 201
    probe = api.post("/api/destinations/wrongbox/test")
    assert probe.status_code == 400, probe.text
    assert probe.json()["error"]["code"] == "authentication_failed"
    assert_likely_causes_in_order(probe.json()["error"]["message"], name)

    batch_id = post_batch(api, "wrongbox", list(sample_data.events(3)))["batch_id"]
    api.post("/api/exports/run")
    status = api.get(f"/api/batches/{batch_id}").json()
    assert status["state"] == "failed", status
    assert status["last_error"]["code"] == "authentication_failed"
    assert_likely_causes_in_order(status["last_error"]["message"], name)
    assert blob_names(fresh_container) == []
