"""A stateful fake Azure Key Vault (secrets, REST API 7.x shapes) and a fake Entra ID token endpoint, over TLS.

Key Vault has no emulator, so the real `SecretClient` and a real azure-identity `ClientSecretCredential` are pointed
at one local pytest-httpserver that speaks HTTPS with a trustme CA and plays both services:

- Key Vault: the first request without a token gets 401 plus a `WWW-Authenticate: Bearer authorization=...,
  resource=...` challenge, as the real service answers; the SDK then asks the credential for a token and retries.
- Entra ID: the OpenID configuration document and the `/<tenant>/oauth2/v2.0/token` client-credentials grant.

Use it from any test module by adding `pytest_plugins = ["tests.support.keyvault"]` to tests/conftest.py (or by
importing the fixtures), then:

    def test_something(fake_key_vault):
        store = fake_key_vault.secret_store()          # a shared.secrets.keyvault.KeyVaultSecretStore
        store.set_secret("export-dest-1", "value")
        assert fake_key_vault.get_count == 0

The server is its own (session-scoped) HTTPServer rather than an override of `httpserver_ssl_context`, so other
tests' plain-HTTP `httpserver` fixtures stay plain HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from azure.identity import ClientSecretCredential
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from shared.secrets.keyvault import KeyVaultSecretStore
from tests.support.http_servers import running_server

TENANT_ID = "8f3c2a1e-4b7d-4e2a-9c1f-5d6e7f8a9b0c"
CLIENT_ID = "2b9e6c4d-1a3f-4c8e-b7d5-0e1f2a3b4c5d"
# The fake service principal's client secret. Tests assert it never shows up in logs either.
CLIENT_SECRET = "fake-client-secret-Zq8~not-real"
KEY_VAULT_RESOURCE = "https://vault.azure.net"

_SECRET_PATH = re.compile(r"^/secrets/(?P<name>[0-9A-Za-z-]+)(?:/(?P<version>[0-9A-Za-z]*))?$")
_DELETED_PATH = re.compile(r"^/deletedsecrets/(?P<name>[0-9A-Za-z-]+)$")

Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class RecordedRequest:
    """What the fake vault saw. No bodies: they hold secret values."""

    method: str
    path: str
    authorization: str | None


@dataclass
class _Version:
    version: str
    value: str
    created: int
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyVaultTLS:
    """A throwaway CA and the server context for `localhost` / `127.0.0.1` certificates."""

    ca_path: Path
    server_context: ssl.SSLContext


class FakeKeyVault:
    """Key Vault secrets + Entra ID token endpoint on a TLS HTTPServer. Thread-safe (the server has its own thread).

    Switches: `forbidden` (answer 403 ForbiddenByRbac to authenticated secret requests), `outage_status`
    (answer that status, e.g. 503, to every authenticated secret request) and `reject_tokens` (answer every
    request with the 401 challenge, as for a token from the wrong tenant).
    """

    def __init__(self, server: HTTPServer, ca_path: Path) -> None:
        self.server = server
        self.ca_path = ca_path
        self.forbidden = False
        self.outage_status: int | None = None
        self.reject_tokens = False
        self.requests: list[RecordedRequest] = []
        self.token_requests: list[dict[str, str]] = []
        self._issued_tokens: set[str] = set()
        self._secrets: dict[str, list[_Version]] = {}
        self._deleted: dict[str, list[_Version]] = {}
        self._lock = threading.Lock()
        self._register()

    # -- addresses and ready-made clients ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.port}"

    @property
    def authority(self) -> str:
        # With a scheme: azure-identity parses a bare "localhost:port" as scheme "localhost" and rejects it.
        return f"https://localhost:{self.server.port}"

    def credential(self, client_secret: str = CLIENT_SECRET) -> ClientSecretCredential:
        """A real azure-identity credential whose Entra ID is this fake."""
        return ClientSecretCredential(
            TENANT_ID,
            CLIENT_ID,
            client_secret,
            authority=self.authority,
            # Instance discovery would ask login.microsoftonline.com whether the authority is known.
            disable_instance_discovery=True,
            connection_verify=str(self.ca_path),
        )

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """SecretClient options for this fake: trust the test CA; accept a challenge resource that is not
        `*.vault.azure.net` (the SDK refuses it otherwise, since the vault is https://localhost:port); no retries."""
        options: dict[str, Any] = {
            "connection_verify": str(self.ca_path),
            "verify_challenge_resource": False,
            "retry_total": 0,
        }
        options.update(overrides)
        return options

    def secret_store(self, **client_overrides: Any) -> KeyVaultSecretStore:
        return KeyVaultSecretStore(self.url, self.credential(), **self.client_kwargs(**client_overrides))

    # -- state, for arranging and asserting ---------------------------------------------------------------------

    @property
    def get_count(self) -> int:
        """GET requests for secrets that reached the vault (including any unauthenticated challenge request)."""
        with self._lock:
            return sum(1 for r in self.requests if r.method == "GET" and r.path.startswith("/secrets/"))

    def put_secret(self, name: str, value: str) -> str:
        """Write a new version directly, as someone rotating the secret in the portal would. Returns the version."""
        with self._lock:
            return self._store(name, value, None, {}).version

    def value_of(self, name: str) -> str | None:
        with self._lock:
            versions = self._secrets.get(name)
            return versions[-1].value if versions else None

    def is_deleted(self, name: str) -> bool:
        with self._lock:
            return name in self._deleted

    def purge(self, name: str) -> None:
        with self._lock:
            self._deleted.pop(name, None)

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _register(self) -> None:
        tenant = re.escape(TENANT_ID)
        self.server.expect_request(
            re.compile(rf"^/{tenant}/v2\.0/\.well-known/openid-configuration$"), method="GET"
        ).respond_with_handler(self._openid_configuration)
        self.server.expect_request(re.compile(rf"^/{tenant}/oauth2/v2\.0/token$"), method="POST").respond_with_handler(
            self._token
        )
        self.server.expect_request(_SECRET_PATH, method="PUT").respond_with_handler(self._guarded(self._set))
        self.server.expect_request(_SECRET_PATH, method="GET").respond_with_handler(self._guarded(self._get))
        self.server.expect_request(_SECRET_PATH, method="DELETE").respond_with_handler(self._guarded(self._delete))
        self.server.expect_request(_DELETED_PATH, method="GET").respond_with_handler(self._guarded(self._get_deleted))

    def _openid_configuration(self, request: Request) -> Response:
        base = f"{self.url}/{TENANT_ID}"
        return _json(
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            },
        )

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return _json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        token = _fake_jwt(form.get("scope", ""))
        with self._lock:
            self._issued_tokens.add(token)
        return _json(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    def _guarded(self, handler: Callable[[Request, str, str], Response]) -> Handler:
        """Authentication, api-version and the failure switches, in the order Key Vault applies them."""

        def guarded(request: Request) -> Response:
            authorization = request.headers.get("Authorization")
            with self._lock:
                self.requests.append(RecordedRequest(request.method, request.path, authorization))
                token = (authorization or "").removeprefix("Bearer ")
                authenticated = authorization is not None and token in self._issued_tokens and not self.reject_tokens
            if not authenticated:
                return self._challenge()
            if "api-version" not in request.args:
                return _error(400, "BadParameter", "The api-version query parameter is missing.")
            if self.outage_status is not None:
                return _error(self.outage_status, "ServiceUnavailable", "The service is temporarily unavailable.")
            if self.forbidden:
                return _error(
                    403,
                    "Forbidden",
                    f"Caller is not authorized to perform action on resource. Caller: appid={CLIENT_ID}",
                    inner="ForbiddenByRbac",
                )
            match = _SECRET_PATH.match(request.path) or _DELETED_PATH.match(request.path)
            assert match is not None
            return handler(request, match["name"], match.groupdict().get("version") or "")

        return guarded

    def _challenge(self) -> Response:
        response = _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{KEY_VAULT_RESOURCE}"'
        )
        return response

    def _set(self, request: Request, name: str, version: str) -> Response:
        body = request.get_json(force=True, silent=True) or {}
        if not isinstance(body.get("value"), str):
            return _error(400, "BadParameter", "Property 'value' is required.")
        with self._lock:
            if name in self._deleted:
                return _error(
                    409,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused;"
                    " in this state, the secret can only be recovered or purged.",
                    inner="ObjectIsDeletedButRecoverable",
                )
            stored = self._store(name, body["value"], body.get("contentType"), body.get("tags") or {})
        return _json(200, self._bundle(name, stored))

    def _get(self, request: Request, name: str, version: str) -> Response:
        with self._lock:
            versions = self._secrets.get(name, [])
            found = [v for v in versions if v.version == version] if version else versions[-1:]
        if not found:
            shown = f"{name}/{version}" if version else name
            return _error(404, "SecretNotFound", f"A secret with (name/id) {shown} was not found in this key vault.")
        return _json(200, self._bundle(name, found[0]))

    def _delete(self, request: Request, name: str, version: str) -> Response:
        with self._lock:
            versions = self._secrets.pop(name, None)
            if versions is not None:
                self._deleted[name] = versions
        if versions is None:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")
        return _json(200, self._deleted_bundle(name, versions[-1]))

    def _get_deleted(self, request: Request, name: str, version: str) -> Response:
        with self._lock:
            versions = self._deleted.get(name)
        if versions is None:
            return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return _json(200, self._deleted_bundle(name, versions[-1]))

    def _store(self, name: str, value: str, content_type: str | None, tags: dict[str, str]) -> _Version:
        stored = _Version(uuid.uuid4().hex, value, int(time.time()), content_type, dict(tags))
        self._secrets.setdefault(name, []).append(stored)
        return stored

    def _bundle(self, name: str, stored: _Version) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "value": stored.value,
            "id": f"{self.url}/secrets/{quote(name)}/{stored.version}",
            "attributes": {
                "enabled": True,
                "created": stored.created,
                "updated": stored.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": stored.tags,
        }
        if stored.content_type is not None:
            bundle["contentType"] = stored.content_type
        return bundle

    def _deleted_bundle(self, name: str, stored: _Version) -> dict[str, Any]:
        bundle = self._bundle(name, stored)
        del bundle["value"]  # Key Vault does not return the value of a deleted secret
        now = int(time.time())
        bundle.update(
            {
                "recoveryId": f"{self.url}/deletedsecrets/{quote(name)}",
                "deletedDate": now,
                "scheduledPurgeDate": now + 90 * 24 * 3600,
            }
        )
        return bundle


def _fake_jwt(scope: str) -> str:
    """An access token shaped like Entra ID's (a JWT with iss/aud/nbf/exp), so Azurite's OAuth mode accepts it.

    Unsigned in substance: Azurite decodes without verifying signatures, and the fake vault compares whole strings.
    """
    now = int(time.time())
    audience = scope.split(" ")[0].removesuffix("/.default") or KEY_VAULT_RESOURCE

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT_ID}/", "iat": now, "nbf": now - 60,
              "exp": now + 3600, "tid": TENANT_ID, "appid": CLIENT_ID, "oid": str(uuid.uuid4()),
              "jti": uuid.uuid4().hex}
    return f"{b64({'typ': 'JWT', 'alg': 'RS256'})}.{b64(claims)}.{uuid.uuid4().hex}"


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")


def _error(status: int, code: str, message: str, inner: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return _json(status, {"error": error})


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def key_vault_tls(tmp_path_factory: pytest.TempPathFactory) -> KeyVaultTLS:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    ca_path = tmp_path_factory.mktemp("keyvault-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return KeyVaultTLS(ca_path=ca_path, server_context=context)


@pytest.fixture(scope="session")
def key_vault_server(key_vault_tls: KeyVaultTLS) -> Iterator[HTTPServer]:
    with running_server("localhost", ssl_context=key_vault_tls.server_context, threaded=False) as server:
        yield server


@pytest.fixture
def fake_key_vault(key_vault_server: HTTPServer, key_vault_tls: KeyVaultTLS) -> Iterator[FakeKeyVault]:
    """A fresh, empty fake vault (and Entra ID) for one test."""
    from azure.keyvault.secrets._shared import http_challenge_cache

    key_vault_server.clear()
    # The SDK remembers each vault host's challenge for the whole process; forget it so every test starts with
    # the unauthenticated request + 401 challenge that a new process would make.
    http_challenge_cache.clear()
    yield FakeKeyVault(key_vault_server, key_vault_tls.ca_path)
    errors = key_vault_server.handler_errors
    key_vault_server.clear()
    if errors:
        raise errors[0]  # a bug in the fake itself; without this it shows only as a 500 to the SDK


@pytest.fixture
def key_vault_store(fake_key_vault: FakeKeyVault) -> KeyVaultSecretStore:
    """A KeyVaultSecretStore (real SecretClient, real ClientSecretCredential) talking to `fake_key_vault`."""
    return fake_key_vault.secret_store()
