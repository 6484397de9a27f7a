"""Security: SSRF through custom endpoints and connection strings, secrets in every output, the function key.

SSRF cases check validation only: a refused endpoint is never contacted (a socket guard records every
connection the process opens while they run, and no DNS lookup is made), and nothing is stored.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.errors import AppError
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.hostile_support import control_blobs, report
from tests.shared.export_helpers import post_batch
from tests.support import secret_watch
from tests.support.azurite import ACCOUNT_KEY, Azurite
from tests.support.sas import container_sas, sas_destination

# --- SSRF ---------------------------------------------------------------------------------------------------------

PRIVATE = [
    "https://169.254.169.254", "https://169.254.169.254/metadata/instance", "https://169.254.169.254.",
    "https://10.0.0.1", "https://10.255.255.254:8443", "https://172.16.0.1", "https://172.31.255.254",
    "https://192.168.0.1", "https://192.168.255.254/devstoreaccount1", "https://100.64.0.1", "https://0.0.0.0",
    "https://0.0.0.0:10000", "https://[::]", "https://[fc00::1]", "https://[fd00:ec2::254]", "https://[fe80::1]",
    "https://[fe80::1%25eth0]", "https://[::ffff:169.254.169.254]", "https://[::ffff:10.0.0.1]",
    "https://[::ffff:a9fe:a9fe]", "https://[64:ff9b::a9fe:a9fe]", "https://[2002:a9fe:a9fe::]",
    "https://[::169.254.169.254]", "https://2852039166", "https://0xa9fea9fe", "https://0251.0376.0251.0376",
    "https://169.254.43518", "https://10.1", "https://0", "https://224.0.0.1", "https://255.255.255.255",
    "https://metadata.google.internal", "https://storage.local", "https://printer.lan", "https://foo.localhost",
    "https://intranet", "https://metadata", "https://\u24dc\u24d4\u24e3\u24d0.internal", "https://\uff11\uff10.0.0.1",
    "https://10.0.0.1\\@acct.blob.core.windows.net", "https://acct.blob.core.windows.net@10.0.0.1",
    "https://10.0.0.1#.blob.core.windows.net", "https://10.0.0.1?.blob.core.windows.net",
    "https://10.0.0.1/ .blob.core.windows.net", "https://10.0.0.1\t", "http://acct.blob.core.windows.net",
]
LOOPBACK = [
    "https://localhost", "https://localhost.", "https://LOCALHOST:10000", "https://127.0.0.1",
    "https://127.0.0.1:10000/devstoreaccount1", "https://127.255.255.254", "https://127.1", "https://2130706433",
    "https://0x7f000001", "https://0177.0.0.1", "https://[::1]", "https://[::1]:10000",
    "http://127.0.0.1:10000/devstoreaccount1", "http://localhost:10000",
]
GOOD = ["https://acct.blob.core.windows.net", "https://exports.example.com/", "https://[2606:4700::1111]",
        "https://8.8.8.8"]


def connection_string(endpoint: str) -> str:
    return f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={FAKE_KEY};BlobEndpoint={endpoint};"


FAKE_KEY = secrets.token_urlsafe(48)
# Strings the storage SDK reads differently from a naive parser: each must be judged by what the SDK will use.
SDK_TRICKS = [
    f"AccountName=acct;AccountKey={FAKE_KEY};BlobEndpo\u0131nt=https://169.254.169.254",  # dotless i upper-cases to I
    f"AccountName=10.0.0.1/x?;AccountKey={FAKE_KEY}; BlobEndpoint=https://acct.blob.core.windows.net",
    f"UseDevelopmentStorage=true;AccountName=acct;AccountKey={FAKE_KEY};BlobEndpoint=https://acct.blob.core.windows.net",
    f"AccountName=acct;AccountKey={FAKE_KEY};BlobEndpoint=https://acct.blob.core.windows.net;"
    "blobendpoint=https://10.0.0.1",
    f"DefaultEndpointsProtocol=https;AccountName=169.254.169.254#;AccountKey={FAKE_KEY}",
    f"AccountName=acct;AccountKey={FAKE_KEY};DefaultEndpointsProtocol=https;EndpointSuffix=localhost",
    "UseDevelopmentStorage=true",
]


class SocketGuard:
    """Records every outgoing connection and name lookup the process makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.connections: list[Any] = []
        self.lookups: list[Any] = []
        create, lookup = socket.create_connection, socket.getaddrinfo

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            self.connections.append(address)
            return create(address, *args, **kwargs)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.lookups.append(host)
            return lookup(host, *args, **kwargs)

        monkeypatch.setattr(socket, "create_connection", create_connection)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def app_for(_api_server: Any, settings: Settings) -> Iterator[Any]:
    """An HTTP client for the API served with ALLOW_HTTP_LOOPBACK as asked, and those services."""
    base_url, current = _api_server
    clients: list[httpx.Client] = []

    def make(allow_loopback: bool) -> tuple[httpx.Client, Services]:
        current.value = build_services(settings.model_copy(update={"allow_http_loopback": allow_loopback}))
        clients.append(httpx.Client(base_url=base_url, timeout=60))
        return clients[-1], current.value

    yield make
    for client in clients:
        client.close()
    current.value = None


def refusals(client: httpx.Client, services: Services, bodies: list[tuple[str, dict[str, Any]]],
             field: str) -> list[tuple[str, int]]:
    """PUT each body; return those not refused with a 422 naming ``field``."""
    wrong = []
    for label, body in bodies:
        response = client.put("/api/destinations/ssrf", json=body)
        fields = [d.get("field") for d in response.json()["error"]["details"]] if response.status_code == 422 else []
        if response.status_code != 422 or field not in fields:
            wrong.append((label, response.status_code))
    assert control_blobs(services) == []  # no destination document
    path = services.settings.local_secrets_path
    assert not path.exists() or json.loads(path.read_text())["secrets"] == {}  # no secret written
    return wrong


# A well-formed SAS that grants nothing real: endpoint checks are the same for every auth type (token auth
# has stricter ones of its own, tested in test_token_audience.py).
DUMMY_SAS = secret_watch.register(
    f"sv=2025-01-05&sr=c&sp=rw&se=2099-01-01T00:00Z&sig={secrets.token_urlsafe(32)}", "dummy SAS") or ""


def endpoint_body(endpoint: str) -> dict[str, Any]:
    return {"endpoint": endpoint, "container": "exports", "auth": {"type": "sas", "sas_token": DUMMY_SAS}}


def cs_body(text: str) -> dict[str, Any]:
    return {"container": "exports", "auth": {"type": "connection_string", "connection_string": text}}


@pytest.mark.parametrize("allow_loopback", [False, True])
def test_private_and_link_local_endpoints_are_refused_without_a_request(
    app_for: Any, monkeypatch: pytest.MonkeyPatch, azurite: Azurite, allow_loopback: bool
) -> None:
    client, services = app_for(allow_loopback)
    services.control.ensure_container()  # before the guard: only the API's own traffic is left to see
    guard = SocketGuard(monkeypatch)
    refused = PRIVATE + ([] if allow_loopback else LOOPBACK)
    wrong = refusals(client, services, [(e, endpoint_body(e)) for e in refused], "endpoint")
    wrong += refusals(client, services, [(e, cs_body(connection_string(e))) for e in refused],
                      "auth.connection_string")
    wrong += refusals(client, services, [(t[:60], cs_body(t)) for t in SDK_TRICKS if not allow_loopback
                                         or "10.0.0.1" in t or "169.254" in t], "auth.connection_string")
    assert wrong == []
    # Nothing but the API server and control storage (Azurite) was contacted; no name was looked up.
    allowed = {("127.0.0.1", azurite.port), ("127.0.0.1", httpx.URL(str(client.base_url)).port)}
    assert {(str(host), int(port)) for host, port, *_ in guard.connections} <= allowed
    assert {str(host) for host in guard.lookups} <= {"127.0.0.1"}
    report(f"ssrf refused (ALLOW_HTTP_LOOPBACK={allow_loopback})", endpoints=len(refused),
           connection_strings=len(refused) + len(SDK_TRICKS))


def test_loopback_is_allowed_only_in_development(app_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = app_for(True)
    guard_before = SocketGuard(monkeypatch)
    for endpoint in [*LOOPBACK, *GOOD]:
        response = client.put("/api/destinations/loop", params={"verify": "false"}, json=endpoint_body(endpoint))
        assert response.status_code in (200, 201), (endpoint, response.text)
        assert response.json()["endpoint"] == endpoint.rstrip("/")
    assert not any(port in {443, 10000} for _, port, *_ in guard_before.connections)  # saved, never contacted
    client, _ = app_for(False)
    for endpoint in GOOD:
        assert client.put("/api/destinations/good", params={"verify": "false"},
                          json=endpoint_body(endpoint)).status_code in (200, 201)


# --- Secrets --------------------------------------------------------------------------------------------------


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = str(uuid.uuid4())
WRONG_FIELDS = ["account_name", "endpoint", "container", "prefix", "format", "compression", "auth.type",
                "auth.secret_name", "auth.tenant_id", "auth.client_id", "unknown", "auth.unknown"]


def misplaced(body: dict[str, Any], field: str, secret: str) -> dict[str, Any]:
    """``body`` with ``secret`` pasted into the wrong field."""
    copy = json.loads(json.dumps(body))
    target, _, name = field.rpartition(".")
    (copy["auth"] if target == "auth" else copy)[name] = secret
    return copy


class Recorder:
    """The API client for this test, keeping every response (status line, headers, body)."""

    def __init__(self, api: httpx.Client):
        self.api = api
        self.texts: list[tuple[str, str]] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.api.request(method, url, **kwargs)
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append((f"{method} {url} -> {response.status_code}", headers + "\n" + response.text))
        return response


def find(watched: dict[str, str], texts: list[tuple[str, str]]) -> list[str]:
    return sorted({f"{label} in {where}" for where, text in texts for value, label in watched.items()
                   if value in text})


def test_no_secret_appears_in_responses_logs_exceptions_or_control_storage(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
    blob_service: BlobServiceClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the app's, the Azure SDK's request logs, urllib3's URLs
    for quieted in ("azure", "urllib3"):  # configure_logging (any earlier get_services) sets these to WARNING
        caplog.set_level(logging.DEBUG, logger=quieted)
    container = fresh_container.container_name
    good = container_sas(container, delete=True)
    rotated = container_sas(container, delete=True, expiry=datetime.now(UTC) + timedelta(hours=5))
    read_only = container_sas(container, write=False)
    expired = container_sas(container, expiry=datetime.now(UTC) - timedelta(hours=1))
    forged = secret_watch.register(good.replace("sig=", "sig=AAAA"), "forged SAS token") or ""
    conn = secret_watch.register(azurite.connection_string, "Azurite connection string") or ""
    bad_key = secret_watch.register(azurite.connection_string.replace(ACCOUNT_KEY, FAKE_KEY),
                                    "connection string with a wrong key") or ""
    sp_secret = secret_watch.register("sp~" + secrets.token_urlsafe(32), "client secret") or ""
    used = {"good SAS": good, "rotated SAS": rotated, "read-only SAS": read_only, "expired SAS": expired,
            "forged SAS": forged, "connection string": conn, "wrong-key connection string": bad_key,
            "client secret": sp_secret}
    watched: dict[str, str] = {}
    for label, value in used.items():
        watched.update(secret_watch.pieces(value, label))

    call = Recorder(api)
    sas = sas_destination(azurite.account_url, container, good)
    sp = {"account_name": "acct", "container": "exports",
          "auth": {"type": "service_principal", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": sp_secret}}
    cs: dict[str, Any] = {"container": container, "auth": {"type": "connection_string", "connection_string": conn}}
    events = list(sample_data.events(5))

    # The working paths: save, test, intake, export, rotate, read back.
    assert call("PUT", "/api/destinations/sas-dest", json=sas).status_code == 201
    assert call("POST", "/api/destinations/sas-dest/test").status_code == 200
    post_batch(api, "sas-dest", events)
    assert call("PUT", "/api/destinations/cs-dest", json=cs).status_code == 201
    assert call("POST", "/api/destinations/cs-dest/test").status_code == 200
    post_batch(api, "cs-dest", events)
    assert call("POST", "/api/exports/run").json()["landed"] == 2
    assert call("PUT", "/api/destinations/sas-dest",
                json=sas_destination(azurite.account_url, container, rotated)).status_code == 200
    # acct.blob.core.windows.net cannot be reached from here: saved without the probe.
    unverified = {"verify": "false"}
    assert call("PUT", "/api/destinations/sp-dest", params=unverified, json=sp).status_code == 201
    assert call("PUT", "/api/destinations/sp-dest", params=unverified, json={**sp, "prefix": "rotated/"}
                ).status_code == 200
    for path in ["/api/destinations", "/api/destinations/sas-dest", "/api/destinations/cs-dest",
                 "/api/destinations/sp-dest", "/api/batches"]:
        assert call("GET", path).status_code == 200

    # The failing paths: refused at save, refused by storage at test and at export.
    assert call("PUT", "/api/destinations/ro", json=sas_destination(azurite.account_url, container, read_only)
                ).status_code == 422
    assert call("PUT", "/api/destinations/old", json=sas_destination(azurite.account_url, container, expired)
                ).status_code == 422
    forged_body = sas_destination(azurite.account_url, container, forged)
    assert call("PUT", "/api/destinations/forged", json=forged_body).status_code == 400  # the probe at save
    assert call("PUT", "/api/destinations/forged", params=unverified, json=forged_body).status_code == 201
    assert call("POST", "/api/destinations/forged/test").status_code >= 400
    batch = post_batch(api, "forged", events)
    bad_key_body = {**cs, "auth": {**cs["auth"], "connection_string": bad_key}}
    assert call("PUT", "/api/destinations/bad-key", json=bad_key_body).status_code == 400
    assert call("PUT", "/api/destinations/bad-key", params=unverified, json=bad_key_body).status_code == 201
    assert call("POST", "/api/destinations/bad-key/test").status_code >= 400
    post_batch(api, "bad-key", events)
    call("POST", "/api/exports/run")
    status = call("GET", f"/api/batches/{batch['batch_id']}").json()
    assert status["last_error"], status  # a failure with words, and (below) without the token
    assert call("PUT", "/api/destinations/leak", json={**sas, "endpoint": f"{azurite.account_url}?{good}"}
                ).status_code == 422
    for field in WRONG_FIELDS:
        for secret in (good, sp_secret, conn):
            if field == "prefix" and secret == sp_secret:
                continue  # any text is a valid prefix: a bare client secret there cannot be told from a name
            response = call("PUT", "/api/destinations/wrong-field", json=misplaced(sp, field, secret))
            assert response.status_code == 422, (field, response.status_code)
    for dest in ["sas-dest", "cs-dest", "sp-dest", "forged", "bad-key"]:
        # force: 'forged' and 'bad-key' have failed batches, which now fail again as "destination deleted"
        assert call("DELETE", f"/api/destinations/{dest}?force=true").status_code == 204

    # Exceptions as code sees them (message, repr, details, the whole formatted chain).
    exceptions: list[tuple[str, str]] = []
    for field in WRONG_FIELDS:
        try:
            services.destinations.put("wrong-field", misplaced(sp, field, good))
        except AppError as exc:
            text = "".join(traceback.format_exception(exc)) + repr(exc) + json.dumps(exc.to_body())
            exceptions.append((f"exception for a secret in {field}", text))
    assert len(exceptions) == len(WRONG_FIELDS)

    logs = [(f"log record of {r.name}", r.getMessage() + (logging.Formatter().formatException(r.exc_info)
             if r.exc_info else "")) for r in caplog.records]
    blobs = [(f"control blob {b.name}", services.control.container.download_blob(b.name).readall().decode())
             for b in services.control.container.list_blobs()]
    blobs += [(f"control blob metadata {b.name}", repr(b.metadata))
              for b in services.control.container.list_blobs(include=["metadata"])]
    destination = [(f"destination blob {b.name}", fresh_container.download_blob(b.name).readall().decode("latin-1"))
                   for b in fresh_container.list_blobs()]
    assert any("sig=" in text for _, text in logs), "the SDK's request logs should have been captured"
    assert find(watched, call.texts) == []
    assert find(watched, logs) == []
    assert find(watched, exceptions) == []
    assert find(watched, blobs) == []
    assert find(watched, destination) == []
    report("secrets: one test's outputs", secret_values=len(watched), responses=len(call.texts), log_records=len(logs),
           exceptions=len(exceptions), control_blobs=len(blobs), hits=0)


# --- The function key -------------------------------------------------------------------------------------------


def test_every_http_route_needs_a_function_key_under_the_functions_host() -> None:
    """The Functions host checks the key before the app sees a request: auth level FUNCTION on both HTTP
    triggers, and between them their routes carry every API path (openapi.json and docs included), each path
    exactly one function's, so its own key. The timer and the queue triggers are the only other functions."""
    import function_app
    from scripts.functions_host import functions_for
    from shared.api.app import create_api
    from tests.test_function_app import _FUNCTIONS, bindings  # get_functions() may run once per process

    http = {name: b for name, bs in bindings().items() for b in bs if b["type"] == "httpTrigger"}
    assert set(http) == {"intake", "admin", "public"}  # public: /api/health* and /api/console* only, no key
    assert all(trigger["authLevel"] == "FUNCTION" for name, trigger in http.items() if name != "public")
    assert function_app.app.auth_level.name == "FUNCTION"
    document = create_api(lambda: None).openapi()  # type: ignore[arg-type, return-value]
    paths = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
    for method, template in [*paths, ("GET", "/api/docs"), ("GET", "/api/openapi.json")]:
        path = template.replace("{destination_id}", "d").replace("{batch_id}", "b")
        served_by = [f.name for f in functions_for(method, path)]
        assert len(served_by) == 1, (method, template, served_by)  # no path is left anonymous, none is shared
    # The others are not reachable over HTTP: the timer and the export queue's two triggers (issue 14).
    assert sorted(name for name in bindings() if name not in http) == [
        "export_poisoned", "export_queued", "scheduled_export"]
    assert len(_FUNCTIONS) == len(bindings())
