"""Destinations through the real HTTP API against Azurite, with real SAS tokens."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.services import Services
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

SP_SECRET = "sp-Secret~" + uuid.uuid4().hex
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"


def sas_body(azurite: Azurite, container: ContainerClient, **kw: object) -> dict[str, object]:
    token = container_sas(container.container_name, **kw)  # type: ignore[arg-type]
    return sas_destination(azurite.account_url, container.container_name, token)


def test_create_and_test_sas_destination(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    body = sas_body(azurite, fresh_container, delete=True)
    created = api.put("/api/destinations/acme-prod", json={**body, "prefix": "exports/"})
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["auth"]["type"] == "sas"
    assert set(view["auth"]["sas"]["permissions"]) >= {"r", "w"}
    assert view["auth"]["sas"]["expiry"]
    assert view["prefix"] == "exports/"

    tested = api.post("/api/destinations/acme-prod/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is True
    assert tested.json()["checks"] == {"write": True, "read": True, "delete": True}
    assert list(fresh_container.list_blobs()) == []  # the probe cleaned up after itself

    updated = api.put("/api/destinations/acme-prod", json=body)
    assert updated.status_code == 200
    assert [d["id"] for d in api.get("/api/destinations").json()["destinations"]] == ["acme-prod"]
    assert api.get("/api/destinations/acme-prod").json()["container"] == fresh_container.container_name


def test_read_write_sas_without_delete_passes_test(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    """CleverTap asks customers for read + write only: that must be enough."""
    assert api.put("/api/destinations/rw-only", json=sas_body(azurite, fresh_container)).status_code == 201
    tested = api.post("/api/destinations/rw-only/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["checks"]["delete"] is False
    assert "probe blob" in tested.json()["warnings"][0]


def test_read_only_sas_is_refused_at_save(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    response = api.put("/api/destinations/read-only", json=sas_body(azurite, fresh_container, write=False))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["field"] == "auth.sas_token"
    assert "lacks write permission" in error["details"][0]["message"]
    assert api.get("/api/destinations/read-only").status_code == 404  # nothing changed


def test_expired_sas_is_refused_at_save(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    expired = datetime.now(UTC) - timedelta(hours=1)
    response = api.put("/api/destinations/old", json=sas_body(azurite, fresh_container, expiry=expired))
    assert response.status_code == 422
    assert "expired on" in response.json()["error"]["details"][0]["message"]


def test_not_yet_valid_sas_is_refused(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    start = datetime.now(UTC) + timedelta(days=2)
    response = api.put("/api/destinations/later", json=sas_body(azurite, fresh_container, start=start))
    assert response.status_code == 422
    assert "not valid until" in response.json()["error"]["details"][0]["message"]


def test_sas_for_missing_container_says_so(api: httpx.Client, azurite: Azurite) -> None:
    token = container_sas("no-such-container")
    body = sas_destination(azurite.account_url, "no-such-container", token)
    at_save = api.put("/api/destinations/ghost", json=body)  # the probe runs before saving
    assert at_save.status_code == 400, at_save.text
    assert at_save.json()["error"]["code"] == "container_not_found"
    assert api.get("/api/destinations/ghost").status_code == 404
    assert api.put("/api/destinations/ghost", params={"verify": "false"}, json=body).status_code == 201
    response = api.post("/api/destinations/ghost/test")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "container_not_found"
    assert "does not exist" in error["message"]


def test_unreachable_endpoint_says_so(api: httpx.Client, fresh_container: ContainerClient) -> None:
    token = container_sas(fresh_container.container_name)
    body = sas_destination("http://127.0.0.1:9/devstoreaccount1", fresh_container.container_name, token)
    at_save = api.put("/api/destinations/nowhere", json=body)
    assert at_save.json()["error"]["code"] == "endpoint_unreachable"
    assert api.put("/api/destinations/nowhere", params={"verify": "false"}, json=body).status_code == 201
    error = api.post("/api/destinations/nowhere/test").json()["error"]
    assert error["code"] == "endpoint_unreachable"
    assert "unreachable" in error["message"]


def test_sas_expiring_soon_warns(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    view = api.put("/api/destinations/soon", json=sas_body(azurite, fresh_container, expiry=soon)).json()
    assert any("expires on" in w for w in view["warnings"])


def test_delete_destination(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
                            services: Services) -> None:
    api.put("/api/destinations/gone", json=sas_body(azurite, fresh_container))
    assert api.delete("/api/destinations/gone").status_code == 204
    assert api.get("/api/destinations/gone").status_code == 404
    assert api.delete("/api/destinations/gone").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"container": "c1c", "auth": {"type": "managed_identity"}}, "body"),
        ({"account_name": "Bad_Name", "container": "abc", "auth": {"type": "managed_identity"}}, "account_name"),
        ({"account_name": "acct1", "container": "A", "auth": {"type": "managed_identity"}}, "container"),
        ({"account_name": "acct1", "container": "abc", "prefix": "../up", "auth": {"type": "managed_identity"}},
         "prefix"),
        ({"account_name": "acct1", "container": "abc", "prefix": "/abs", "auth": {"type": "managed_identity"}},
         "prefix"),
        ({"account_name": "acct1", "container": "abc", "prefix": "a\x01b", "auth": {"type": "managed_identity"}},
         "prefix"),
        ({"account_name": "acct1", "container": "abc", "prefix": "%2e%2e/x", "auth": {"type": "managed_identity"}},
         "prefix"),
        ({"account_name": "acct1", "container": "abc", "format": "xml", "auth": {"type": "managed_identity"}},
         "format"),
        ({"account_name": "acct1", "container": "abc", "compression": "zip", "auth": {"type": "managed_identity"}},
         "compression"),
        ({"account_name": "acct1", "container": "abc", "auth": {"type": "password"}}, "auth"),
        ({"account_name": "acct1", "container": "abc", "auth": {"type": "sas"}}, "auth"),
        ({"endpoint": "http://example.com", "container": "abc", "auth": {"type": "managed_identity"}}, "endpoint"),
        ({"endpoint": "https://169.254.169.254", "container": "abc", "auth": {"type": "managed_identity"}},
         "endpoint"),
        ({"endpoint": "https://10.0.0.5", "container": "abc", "auth": {"type": "managed_identity"}}, "endpoint"),
        ({"account_name": "acct1", "container": "abc",
          "auth": {"type": "service_principal", "tenant_id": "nope", "client_id": CLIENT, "client_secret": "x"}},
         "auth.tenant_id"),
        ({"account_name": "acct1", "container": "abc", "color": "blue", "auth": {"type": "managed_identity"}},
         "color"),
    ],
)
def test_each_bad_field_is_named(api: httpx.Client, body: dict[str, object], field: str) -> None:
    response = api.put("/api/destinations/bad-one", json=body)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert field in fields, fields
    assert api.get("/api/destinations/bad-one").status_code == 404


def test_several_bad_fields_are_all_named(api: httpx.Client) -> None:
    body = {"account_name": "X", "container": "Y", "prefix": "/z", "auth": {"type": "managed_identity"}}
    details = api.put("/api/destinations/multi", json=body).json()["error"]["details"]
    assert {"account_name", "container", "prefix"} <= {d["field"] for d in details}


@pytest.mark.parametrize("bad_id", ["ab", "UPPER", "has_underscore", "x" * 64, "dots.dots"])
def test_bad_destination_ids(api: httpx.Client, bad_id: str) -> None:
    body = {"account_name": "acct1", "container": "abc", "auth": {"type": "managed_identity"}}
    response = api.put(f"/api/destinations/{bad_id}", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "id"


def test_malformed_json_body(api: httpx.Client) -> None:
    response = api.put("/api/destinations/abc", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_secrets_never_leak(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    blob_service: BlobServiceClient, caplog: pytest.LogCaptureFixture,
) -> None:
    """The SAS token and client secret appear in no response, no control blob and no log line."""
    caplog.set_level(logging.DEBUG)
    token = container_sas(fresh_container.container_name)
    signature = dict(p.split("=", 1) for p in token.split("&"))["sig"]
    bodies = []
    bodies.append(api.put("/api/destinations/leak-sas", json=sas_destination(
        azurite.account_url, fresh_container.container_name, token)).text)
    sp = {"account_name": "acct1", "container": "abc", "auth": {
        "type": "service_principal", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SP_SECRET}}
    bodies.append(api.put("/api/destinations/leak-sp", params={"verify": "false"}, json=sp).text)
    bodies.append(api.put("/api/destinations/leak-sp", json={**sp, "prefix": "../x"}).text)  # a 422 echoes nothing
    bodies.append(api.put("/api/destinations/leak-sas2", json=sas_destination(
        azurite.account_url, fresh_container.container_name, container_sas("x", write=False))).text)
    for path in ["/api/destinations", "/api/destinations/leak-sas", "/api/destinations/leak-sp"]:
        bodies.append(api.get(path).text)
    bodies.append(api.post("/api/destinations/leak-sas/test").text)
    control = blob_service.get_container_client(services.settings.control_container)
    stored = [control.download_blob(b.name).readall().decode() for b in control.list_blobs()]
    assert stored, "control storage holds the destinations"
    logs = caplog.text
    for secret in (token, signature, SP_SECRET):
        for where, texts in (("response", bodies), ("control storage", stored), ("logs", [logs])):
            assert not any(secret in text for text in texts), f"secret found in {where}"
    # ...while the secret store does have them (the local development store in tests).
    sp_secret_name = services.destinations.get_record("leak-sp").secret_name
    assert services.secrets.get(sp_secret_name) == SP_SECRET
