"""A fake managed-identity token endpoint in the App Service / Azure Functions style.

azure-identity's `ManagedIdentityCredential` (through MSAL's `ManagedIdentityClient`) picks the App Service flavour
when the environment has IDENTITY_ENDPOINT and IDENTITY_HEADER (and no IDENTITY_SERVER_THUMBPRINT, which would mean
Service Fabric). It then sends

    GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<scope without /.default>[&client_id=<guid>]
    X-IDENTITY-HEADER: $IDENTITY_HEADER

and expects JSON with `access_token` and `expires_on` (epoch seconds, a string on App Service), plus `resource`
and `token_type`. Plain http on 127.0.0.1 is what App Service itself hands out, and neither azure-identity nor MSAL
insists on https for it, so this is a plain pytest-httpserver.

Every token says its audience (a JWT whose `aud` is the resource asked for; see tests.support.access_tokens) and
every request is recorded, so a test can assert which audiences the app ever asked for:

    def test_something(fake_managed_identity):
        ...
        assert fake_managed_identity.resources == ["https://storage.azure.com"]

The `fake_managed_identity` fixture sets IDENTITY_ENDPOINT / IDENTITY_HEADER with monkeypatch (and removes the
variables that would make azure-identity choose another flavour), so build the app's services inside the test.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.support import secret_watch
from tests.support.access_tokens import fake_access_token
from tests.support.http_servers import running_server

TOKEN_PATH = "/msi/token"
# The client id a system-assigned identity reports; any GUID does.
SYSTEM_CLIENT_ID = "5f0c8a7e-3d2b-4c1a-9e8f-7a6b5c4d3e2f"
# Set by this fixture; the others are cleared so azure-identity and MSAL pick the App Service flavour and nothing else.
_OTHER_IDENTITY_VARIABLES = (
    "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_AUTHORITY_HOST",
)


@dataclass(frozen=True)
class TokenRequest:
    resource: str
    client_id: str | None
    api_version: str | None
    header_ok: bool


class FakeManagedIdentity:
    """The App Service token endpoint: records each request, issues tokens whose `aud` is the resource asked for."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.identity_header = secrets.token_urlsafe(24)
        self.requests: list[TokenRequest] = []
        self.issued: dict[str, str] = {}  # token -> resource
        self._lock = threading.Lock()
        secret_watch.register(self.identity_header, "fake managed identity X-IDENTITY-HEADER")
        server.expect_request(TOKEN_PATH, method="GET").respond_with_handler(self._token)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{TOKEN_PATH}"

    @property
    def resources(self) -> list[str]:
        """Every resource asked for, in order (repeats included)."""
        with self._lock:
            return [r.resource for r in self.requests]

    def issued_resources(self) -> set[str]:
        with self._lock:
            return set(self.issued.values())

    def resource_of(self, token: str) -> str | None:
        with self._lock:
            return self.issued.get(token)

    def _token(self, request: Request) -> Response:
        resource = request.args.get("resource", "")
        header_ok = secrets.compare_digest(request.headers.get("X-IDENTITY-HEADER", ""), self.identity_header)
        client_id = request.args.get("client_id")
        with self._lock:
            self.requests.append(TokenRequest(resource, client_id, request.args.get("api-version"), header_ok))
        if not header_ok:
            return _json(401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong"})
        if not resource:
            return _json(400, {"statusCode": 400, "message": "resource is required"})
        token = fake_access_token(resource, idtyp="app", xms_mirid="/subscriptions/0/fake-identity")
        with self._lock:
            self.issued[token] = resource
        secret_watch.register(token, f"managed identity token for {resource}")
        return _json(200, {
            "access_token": token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id or SYSTEM_CLIENT_ID,
        })


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.fixture(scope="session")
def managed_identity_server() -> Iterator[HTTPServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def fake_managed_identity(
    managed_identity_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeManagedIdentity]:
    """A fresh token endpoint, with IDENTITY_ENDPOINT / IDENTITY_HEADER pointing at it for this test."""
    managed_identity_server.clear()
    fake = FakeManagedIdentity(managed_identity_server)
    for name in _OTHER_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", fake.identity_header)
    yield fake
    errors = managed_identity_server.handler_errors
    managed_identity_server.clear()
    if errors:
        raise errors[0]  # a bug in the fake itself
