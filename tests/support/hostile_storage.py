"""A hostile "storage account" over TLS, and an internal service it points redirects at.

`AttackerStorage` is a pytest-httpserver speaking HTTPS with a trustme CA whose certificate covers
`*.blob.core.windows.net` (so `victim.`, `evilacct.` and `elsewhere.` all verify) and `evil-storage.example.net`.
Route a name to it with the `host_routes` fixture (tests/support/resolver.py), and make the app's storage clients
trust the CA with `client_options={"transport_options": {"connection_verify": str(attacker.ca_path)}}`.

It records every request (method, Host, path, Authorization) and answers requests for its target host with either

- `answer_with_challenge()`: 401 + `WWW-Authenticate: Bearer authorization_uri=... resource_id=https://vault.azure.net`
  and a storage-like XML error: the storage SDK's challenge handling would fetch a Key Vault token and resend;
- `answer_with_redirect(location)`: 307 to `location` (such as `InternalService.url`, a plain-http 127.0.0.1
  address, or another https name routed here).

Requests for any other host (where a followed redirect would arrive) get 403 and are recorded too.

`InternalService` plays the service behind the firewall: plain http on 127.0.0.1, records every hit and answers 200
with a body carrying `INTERNAL_MARKER`, so a test can tell whether anything of it came back out.
"""

from __future__ import annotations

import re
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.support.http_servers import running_server

KEY_VAULT_RESOURCE = "https://vault.azure.net"
TARGET_HOST = "victim.blob.core.windows.net"
CERT_NAMES = ("*.blob.core.windows.net", "evil-storage.example.net")
INTERNAL_MARKER = f"internal-only-{uuid.uuid4().hex}"
_ANY_PATH = re.compile(r"^/.*$")


@dataclass(frozen=True)
class Hit:
    method: str
    host: str
    path: str
    authorization: str | None


@dataclass(frozen=True)
class AttackerTLS:
    ca_path: Path
    server_context: ssl.SSLContext


class AttackerStorage:
    """See the module docstring. Thread-safe; the server handles each connection in its own thread."""

    def __init__(self, server: HTTPServer, ca_path: Path, target_host: str = TARGET_HOST) -> None:
        self.server = server
        self.ca_path = ca_path
        self.target_host = target_host
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._respond = self._challenge
        self._tenant = "common"
        self._resource = KEY_VAULT_RESOURCE
        self._location = ""
        server.expect_request(_ANY_PATH).respond_with_handler(self._handle)

    @property
    def port(self) -> int:
        return int(self.server.port)

    def answer_with_challenge(self, resource_id: str = KEY_VAULT_RESOURCE, tenant_id: str = "common") -> None:
        self._resource, self._tenant, self._respond = resource_id, tenant_id, self._challenge

    def answer_with_redirect(self, location: str) -> None:
        self._location, self._respond = location, self._redirect

    def hits_for(self, host: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.host == host]

    @property
    def authorizations(self) -> list[str]:
        """Every Authorization header received, in order (requests without one are left out)."""
        with self._lock:
            return [h.authorization for h in self.hits if h.authorization is not None]

    def _handle(self, request: Request) -> Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        with self._lock:
            self.hits.append(Hit(request.method, host, request.path, request.headers.get("Authorization")))
        if host != self.target_host:
            return _storage_error(403, "AuthorizationFailure", "This request is not authorized.")
        return self._respond(request)

    def _challenge(self, request: Request) -> Response:
        response = _storage_error(
            401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the "
            "information in the www-authenticate header.")
        response.headers["WWW-Authenticate"] = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{self._tenant}/oauth2/authorize "
            f"resource_id={self._resource}"
        )
        return response

    def _redirect(self, request: Request) -> Response:
        return Response("", status=307, headers={"Location": self._location})


class InternalService:
    """A plain-http service on 127.0.0.1 that only the app's own network should reach."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        server.expect_request(_ANY_PATH).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/internal"

    @property
    def hit_count(self) -> int:
        with self._lock:
            return len(self.hits)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self.hits.append(Hit(request.method, request.host or "", request.path,
                                 request.headers.get("Authorization")))
        body = f"<?xml version=\"1.0\"?><Internal><Secret>{INTERNAL_MARKER}</Secret></Internal>"
        return Response(body, status=200, content_type="application/xml")


def _storage_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:{uuid.uuid4()}\nTime:2026-01-01T00:00:00.0000000Z</Message></Error>")
    return Response(body, status=status, content_type="application/xml", headers={"x-ms-error-code": code})


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def attacker_tls(tmp_path_factory: pytest.TempPathFactory) -> AttackerTLS:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*CERT_NAMES).configure_cert(context)
    ca_path = tmp_path_factory.mktemp("attacker-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return AttackerTLS(ca_path=ca_path, server_context=context)


@pytest.fixture(scope="session")
def _attacker_server(attacker_tls: AttackerTLS) -> Iterator[HTTPServer]:
    with running_server(ssl_context=attacker_tls.server_context) as server:
        yield server


@pytest.fixture(scope="session")
def _internal_server() -> Iterator[HTTPServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def attacker(_attacker_server: HTTPServer, attacker_tls: AttackerTLS) -> Iterator[AttackerStorage]:
    """A fresh hostile storage server answering with the Key Vault challenge until told otherwise."""
    _attacker_server.clear()
    yield AttackerStorage(_attacker_server, attacker_tls.ca_path)
    _raise_handler_errors(_attacker_server)


@pytest.fixture
def internal_service(_internal_server: HTTPServer) -> Iterator[InternalService]:
    _internal_server.clear()
    yield InternalService(_internal_server)
    _raise_handler_errors(_internal_server)


def _raise_handler_errors(server: HTTPServer) -> None:
    errors = server.handler_errors
    server.clear()
    if errors:
        raise errors[0]  # a bug in the fake itself; without this it shows only as a 500 to the SDK
