"""The app's Entra ID tokens go only to Azure Storage and only for Azure Storage; destinations follow no redirects.

Issue 9, items 1 and 3. A destination names its own endpoint, so with token auth (managed identity, service
principal) the customer chooses where the app's bearer token goes: only Azure Storage blob endpoints are accepted,
managed identity only for allow-listed accounts, and a 401 challenge that names another resource (Key Vault) never
turns into a token for it. A redirect from a destination is never followed, so neither a probe nor customer records
reach an internal address, and nothing of the answer comes back.

Driven through the real HTTP server. `victim.blob.core.windows.net` is routed to a local hostile TLS server
(tests/support/hostile_storage.py, tests/support/resolver.py); tokens come from a fake App Service managed-identity
endpoint (tests/support/managed_identity.py) or the fake Entra ID (tests/support/keyvault.py), and say their audience.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from shared.settings import Settings, load_settings
from tests.shared.export_helpers import post_batch
from tests.support import secret_watch
from tests.support.access_tokens import STORAGE_RESOURCE, STORAGE_SCOPE, audience_of
from tests.support.hostile_storage import (
    INTERNAL_MARKER,
    KEY_VAULT_RESOURCE,
    AttackerStorage,
    AttackerTLS,
    InternalService,
)
from tests.support.keyvault import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeKeyVault, KeyVaultTLS
from tests.support.managed_identity import FakeManagedIdentity
from tests.support.resolver import HostRoutes

VICTIM_HOST = "victim.blob.core.windows.net"
VICTIM = f"https://{VICTIM_HOST}"
RECORDS = [{"event": "Signed up", "properties": {"time": 1763629200 + i, "distinct_id": f"u{i}"}} for i in range(5)]
ApiServerFixture = tuple[str, Any]  # (base URL, the conftest's current-services holder)


@contextmanager
def serving(api_server: ApiServerFixture, services: Services) -> Iterator[httpx.Client]:
    """The session's real API server, serving `services` for the block (as test_service_principal.py does)."""
    base_url, current = api_server
    current.value = services
    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            yield client
    finally:
        current.value = None


CONTAINER = {"container": "exports", "format": "jsonl", "compression": "none"}
MANAGED_IDENTITY = {"type": "managed_identity"}


def mi_body(endpoint: str) -> dict[str, Any]:
    return {"endpoint": endpoint, **CONTAINER, "auth": MANAGED_IDENTITY}


def sp_body(endpoint: str) -> dict[str, Any]:
    return {"endpoint": endpoint, **CONTAINER, "auth": {"type": "service_principal", "tenant_id": TENANT_ID,
                                                         "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}}


def sas_body(endpoint: str) -> dict[str, Any]:
    """A syntactically valid container SAS (sr=c, sp=rw, a future se) signed with a throwaway key."""
    token = generate_container_sas(
        "victim", "exports", account_key=base64.b64encode(os.urandom(64)).decode(),
        permission=ContainerSasPermissions(read=True, write=True), expiry=datetime.now(UTC) + timedelta(days=1))
    secret_watch.register(token, "throwaway container SAS token")
    return {"endpoint": endpoint, **CONTAINER, "auth": {"type": "sas", "sas_token": token}}


BODIES: dict[str, Callable[[str], dict[str, Any]]] = {"managed_identity": mi_body, "service_principal": sp_body}


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json().get("error")
    assert isinstance(error, dict), response.text
    return error


def refused_for_endpoint(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert "endpoint" in {d["field"] for d in error.get("details", [])}, response.text


def with_settings(settings: Settings, **changes: Any) -> Settings:
    # model_copy does not validate: give values in their validated form (tuples, lower case, leading dot).
    return settings.model_copy(update=changes)


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def token_settings(settings: Settings) -> Settings:
    return with_settings(settings, managed_identity_accounts=("victim", "acct"))


@pytest.fixture
def mi_services(token_settings: Settings, attacker_tls: AttackerTLS,
                fake_managed_identity: FakeManagedIdentity) -> Services:
    """Managed identity from the fake App Service endpoint; storage clients trust the attacker's CA."""
    return build_services(token_settings,
                          client_options={"transport_options": {"connection_verify": str(attacker_tls.ca_path)}})


@pytest.fixture
def sp_services(token_settings: Settings, attacker_tls: AttackerTLS, fake_key_vault: FakeKeyVault,
                key_vault_tls: KeyVaultTLS) -> Services:
    """Service principals get tokens from the fake Entra ID; storage clients trust the attacker's CA."""
    return build_services(token_settings, client_options={
        "credential_options": {"authority": fake_key_vault.authority, "disable_instance_discovery": True,
                               "connection_verify": str(key_vault_tls.ca_path)},
        "transport_options": {"connection_verify": str(attacker_tls.ca_path)},
    })


@dataclass
class TokenCase:
    kind: str
    services: Services
    requested: Callable[[], list[str]]  # what the app asked its token issuer for, in order
    storage_request: str  # how a request for a storage token looks to that issuer


@pytest.fixture(params=["managed_identity", "service_principal"])
def token_case(request: pytest.FixtureRequest, attacker: AttackerStorage, host_routes: HostRoutes) -> TokenCase:
    """Either kind of token auth, with VICTIM routed to the attacker answering a Key Vault challenge."""
    attacker.answer_with_challenge(KEY_VAULT_RESOURCE, tenant_id=TENANT_ID)  # the SP's own tenant: no tenant refusal
    host_routes.route(VICTIM_HOST, attacker.port)
    if request.param == "managed_identity":
        mi: FakeManagedIdentity = request.getfixturevalue("fake_managed_identity")
        return TokenCase("managed_identity", request.getfixturevalue("mi_services"), lambda: mi.resources,
                         STORAGE_RESOURCE)
    vault: FakeKeyVault = request.getfixturevalue("fake_key_vault")
    return TokenCase("service_principal", request.getfixturevalue("sp_services"),
                     lambda: [r.get("scope", "") for r in vault.token_requests], STORAGE_SCOPE)


def assert_only_storage_tokens(case: TokenCase, attacker: AttackerStorage) -> None:
    requested = case.requested()
    assert requested, "the app never asked for a storage token: the test did not reach the attacker"
    assert set(requested) == {case.storage_request}, f"token requests for other audiences: {requested}"
    sent = [audience_of(header) for header in attacker.authorizations]
    assert sent, "the attacker received no bearer token at all: the test did not exercise the challenge"
    assert set(sent) == {STORAGE_RESOURCE}, f"audiences sent to the attacker: {sent}"


# --- 1. Token auth only for Azure Storage blob endpoints -----------------------------------------------------------

ACCEPTED = ["https://acct.blob.core.windows.net", "https://acct.z12.blob.storage.azure.net",
            "https://acct.blob.core.chinacloudapi.cn", "https://acct.blob.core.usgovcloudapi.net"]
REFUSED = ["https://evil-storage.example.net", "https://acct.blob.core.windows.net.evil.example",
           "https://blob.core.windows.net", "https://acct.file.core.windows.net", "https://acct.dfs.core.windows.net",
           "https://evil.example/acct.blob.core.windows.net", "https://acctblob.core.windows.net",
           "https://acct.z12.blob.storage.azure.net.evil.example", "http://victim.blob.core.windows.net"]


@pytest.mark.parametrize("kind", sorted(BODIES))
@pytest.mark.parametrize("endpoint", REFUSED)
def test_token_auth_is_refused_for_an_endpoint_that_is_not_an_azure_storage_blob_endpoint(
    _api_server: ApiServerFixture, token_settings: Settings, fake_managed_identity: FakeManagedIdentity,
    fake_key_vault: FakeKeyVault, attacker: AttackerStorage, host_routes: HostRoutes, kind: str, endpoint: str,
) -> None:
    host_routes.route("evil-storage.example.net", attacker.port)
    with serving(_api_server, build_services(token_settings)) as api:
        refused_for_endpoint(api.put("/api/destinations/token-dest", json=BODIES[kind](endpoint)))
        assert api.get("/api/destinations/token-dest").status_code == 404, "nothing is stored"
    assert fake_managed_identity.requests == [] and fake_key_vault.token_requests == [], "no token was fetched"
    assert attacker.hits == []


@pytest.mark.parametrize("kind", sorted(BODIES))
@pytest.mark.parametrize("endpoint", ACCEPTED)
def test_token_auth_is_accepted_for_azure_storage_blob_endpoints(
    _api_server: ApiServerFixture, token_settings: Settings, kind: str, endpoint: str
) -> None:
    with serving(_api_server, build_services(token_settings)) as api:
        response = api.put("/api/destinations/token-dest", params={"verify": "false"}, json=BODIES[kind](endpoint))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("endpoint", "accepted"), [
    ("https://127.0.0.1:10000/devstoreaccount1", True), ("http://127.0.0.1:10000/devstoreaccount1", False),
    ("http://localhost:10000/devstoreaccount1", False),
])
def test_token_auth_to_loopback_needs_https_even_where_loopback_is_allowed(
    _api_server: ApiServerFixture, token_settings: Settings, endpoint: str, accepted: bool
) -> None:
    assert token_settings.allow_http_loopback
    with serving(_api_server, build_services(token_settings)) as api:
        response = api.put("/api/destinations/token-dest", params={"verify": "false"}, json=sp_body(endpoint))
    if accepted:
        assert response.status_code == 201, response.text
    else:
        refused_for_endpoint(response)


def test_an_extra_blob_endpoint_suffix_is_trusted_only_once_configured(
    _api_server: ApiServerFixture, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = "https://acct.blob.core.contoso.example"
    monkeypatch.setenv("TOKEN_AUTH_ENDPOINT_SUFFIXES", "blob.core.contoso.example")  # the app setting, as written
    configured = load_settings(**settings.model_dump(exclude={"token_auth_endpoint_suffixes"}))
    with serving(_api_server, build_services(settings)) as api:
        refused_for_endpoint(api.put("/api/destinations/custom", params={"verify": "false"}, json=sp_body(custom)))
    with serving(_api_server, build_services(configured)) as api:
        response = api.put("/api/destinations/custom", params={"verify": "false"}, json=sp_body(custom))
        assert response.status_code == 201, response.text
        refused_for_endpoint(api.put("/api/destinations/lookalike", params={"verify": "false"},
                                     json=sp_body(f"{custom}.evil.example")))


# --- 2. Managed identity only for allow-listed accounts ------------------------------------------------------------


@pytest.mark.parametrize("body", [mi_body("https://other.blob.core.windows.net"),
                                  {"account_name": "other", **CONTAINER, "auth": MANAGED_IDENTITY}])
def test_managed_identity_is_refused_for_an_account_that_is_not_allow_listed(
    _api_server: ApiServerFixture, token_settings: Settings, fake_managed_identity: FakeManagedIdentity,
    body: dict[str, Any],
) -> None:
    with serving(_api_server, build_services(token_settings)) as api:
        response = api.put("/api/destinations/other-mi", params={"verify": "false"}, json=body)
        assert response.status_code == 422, response.text
        assert error_of(response)["code"] == "validation_failed"
        assert api.get("/api/destinations/other-mi").status_code == 404
    assert fake_managed_identity.requests == []


def test_managed_identity_is_refused_while_no_account_is_allow_listed(
    _api_server: ApiServerFixture, settings: Settings, fake_managed_identity: FakeManagedIdentity
) -> None:
    with serving(_api_server, build_services(with_settings(settings, managed_identity_accounts=()))) as api:
        response = api.put("/api/destinations/victim-mi", params={"verify": "false"}, json=mi_body(VICTIM))
        assert response.status_code == 422, response.text
        assert error_of(response)["code"] == "validation_failed"
        text = response.text.lower()
        assert "managed identity" in text and "not enabled" in text, response.text
        assert api.get("/api/destinations/victim-mi").status_code == 404
    assert fake_managed_identity.requests == []


# --- 3 and 4. A challenge for Key Vault never turns into a Key Vault token ----------------------------------------


def test_saving_probes_first_and_a_key_vault_challenge_saves_nothing_and_gets_no_vault_token(
    _api_server: ApiServerFixture, token_case: TokenCase, attacker: AttackerStorage
) -> None:
    with serving(_api_server, token_case.services) as api:
        response = api.put("/api/destinations/victim", json=BODIES[token_case.kind](VICTIM))
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == "authentication_failed"
        assert api.get("/api/destinations/victim").status_code == 404, "a destination that failed its probe is saved"
    assert_only_storage_tokens(token_case, attacker)


def test_testing_and_exporting_never_fetch_or_send_a_token_for_the_resource_a_challenge_names(
    _api_server: ApiServerFixture, token_case: TokenCase, attacker: AttackerStorage
) -> None:
    with serving(_api_server, token_case.services) as api:
        saved = api.put("/api/destinations/victim", params={"verify": "false"}, json=BODIES[token_case.kind](VICTIM))
        assert saved.status_code == 201, saved.text
        tested = api.post("/api/destinations/victim/test")
        assert tested.status_code == 400, tested.text
        assert error_of(tested)["code"] == "authentication_failed"
        batch = post_batch(api, "victim", RECORDS)
        assert run_export_pass(token_case.services).landed == 0
        status = api.get(f"/api/batches/{batch['batch_id']}").json()
    assert status["state"] != "landed"
    assert (status["last_error"] or {}).get("code") == "authentication_failed", status
    assert_only_storage_tokens(token_case, attacker)


# --- 5. Redirects are not followed ---------------------------------------------------------------------------------


@pytest.fixture
def redirecting_services(settings: Settings, attacker_tls: AttackerTLS, attacker: AttackerStorage,
                         internal_service: InternalService, host_routes: HostRoutes) -> Services:
    """SAS destinations; VICTIM routed to the attacker, which answers 307 to the internal service."""
    attacker.answer_with_redirect(internal_service.url)
    host_routes.route(VICTIM_HOST, attacker.port)
    return build_services(settings, client_options={"transport_options": {"connection_verify":
                                                                          str(attacker_tls.ca_path)}})


def assert_redirect_refused(response: httpx.Response, internal: InternalService) -> None:
    assert internal.hit_count == 0, f"the internal service was reached: {internal.hits}"
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "destination_redirected"
    assert INTERNAL_MARKER not in response.text and internal.url not in response.text, "the remote answer is quoted"


def test_saving_a_destination_that_redirects_is_refused_and_the_internal_address_is_never_reached(
    _api_server: ApiServerFixture, redirecting_services: Services, internal_service: InternalService
) -> None:
    with serving(_api_server, redirecting_services) as api:
        assert_redirect_refused(api.put("/api/destinations/redirecting", json=sas_body(VICTIM)), internal_service)
        assert api.get("/api/destinations/redirecting").status_code == 404


def test_destination_test_does_not_follow_a_redirect_to_an_internal_address(
    _api_server: ApiServerFixture, redirecting_services: Services, internal_service: InternalService
) -> None:
    with serving(_api_server, redirecting_services) as api:
        saved = api.put("/api/destinations/redirecting", params={"verify": "false"}, json=sas_body(VICTIM))
        assert saved.status_code == 201, saved.text
        assert_redirect_refused(api.post("/api/destinations/redirecting/test"), internal_service)


def test_export_does_not_send_records_through_a_redirect_to_an_internal_address(
    _api_server: ApiServerFixture, redirecting_services: Services, internal_service: InternalService
) -> None:
    with serving(_api_server, redirecting_services) as api:
        saved = api.put("/api/destinations/redirecting", params={"verify": "false"}, json=sas_body(VICTIM))
        assert saved.status_code == 201, saved.text
        batch = post_batch(api, "redirecting", RECORDS)
        summary = run_export_pass(redirecting_services)
        status = api.get(f"/api/batches/{batch['batch_id']}")
    assert internal_service.hit_count == 0, f"customer records went to the internal service: {internal_service.hits}"
    assert summary.landed == 0
    assert status.json()["state"] != "landed"
    assert (status.json()["last_error"] or {}).get("code") == "destination_redirected", status.text
    assert INTERNAL_MARKER not in status.text


def test_a_redirect_to_another_https_host_is_not_followed(
    _api_server: ApiServerFixture, redirecting_services: Services, attacker: AttackerStorage,
    internal_service: InternalService, host_routes: HostRoutes,
) -> None:
    elsewhere = "elsewhere.blob.core.windows.net"
    host_routes.route(elsewhere, attacker.port)
    attacker.answer_with_redirect(f"https://{elsewhere}/exports/probe")
    with serving(_api_server, redirecting_services) as api:
        saved = api.put("/api/destinations/redirecting", params={"verify": "false"}, json=sas_body(VICTIM))
        assert saved.status_code == 201, saved.text
        tested = api.post("/api/destinations/redirecting/test")
    assert attacker.hits_for(elsewhere) == [], "the redirect was followed to another host"
    assert attacker.hits_for(VICTIM_HOST), "the probe never reached the destination"
    assert_redirect_refused(tested, internal_service)
