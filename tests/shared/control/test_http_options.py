"""Storage clients read the environment's HTTP settings once (shared.control.store.http_options), not on every
request: requests looked for ~/.netrc on each one, 10-20% of intake's CPU; and the transport they share carries
the timeouts their callers chose."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.control.store import (
    CA_BUNDLE_SETTINGS,
    PROXY_SETTINGS,
    READ_BLOCK_BYTES,
    DirectSession,
    PoolKeyCachingAdapter,
    http_options,
    pooled_transport,
)
from shared.settings import Settings
from tests.support.azurite import Azurite
from tests.support.http_servers import running_server, silent_server


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_SETTINGS, *CA_BUNDLE_SETTINGS):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_no_proxy_and_no_bundle_read_nothing_from_the_environment(bare: pytest.MonkeyPatch) -> None:
    assert http_options() == {"use_env_settings": False}
    assert pooled_transport(4).session.trust_env is False  # type: ignore[union-attr]
    assert isinstance(pooled_transport(4).session, DirectSession)


def test_a_ca_bundle_alone_is_handed_to_the_sdk(bare: pytest.MonkeyPatch) -> None:
    bare.setenv("CURL_CA_BUNDLE", "/curl.pem")
    assert http_options() == {"use_env_settings": False, "connection_verify": "/curl.pem"}
    bare.setenv("REQUESTS_CA_BUNDLE", "/requests.pem")  # requests prefers this one, and so do we
    assert http_options()["connection_verify"] == "/requests.pem"
    assert pooled_transport(4).connection_config.verify == "/requests.pem"


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "NO_PROXY"])
def test_a_proxy_leaves_the_environment_to_requests(bare: pytest.MonkeyPatch, name: str) -> None:
    bare.setenv(name, "http://proxy.invalid:3128" if "NO" not in name else "localhost")
    bare.setenv("REQUESTS_CA_BUNDLE", "/requests.pem")
    assert http_options() == {"use_env_settings": True}
    assert pooled_transport(4).session.trust_env is True  # type: ignore[union-attr]
    assert not isinstance(pooled_transport(4).session, DirectSession)  # requests applies the proxy


def test_clients_built_so_still_reach_storage(bare: pytest.MonkeyPatch, azurite: Azurite) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string, transport=pooled_transport(4))
    assert service.get_service_properties() is not None


def test_a_hanging_storage_request_gives_up_at_the_transports_read_timeout() -> None:
    """A client given a transport does not hand its own timeouts to it: they are set on the transport, and a
    request to storage that never answers fails after its read timeout (azure-core's default would wait 300 s)."""
    from azure.core.exceptions import ServiceResponseError
    from azure.storage.blob import ContainerClient, LinearRetry

    outcome: list[BaseException] = []
    with silent_server() as port:
        container = ContainerClient(f"http://127.0.0.1:{port}/devstoreaccount1", "control", credential=None,
                                    transport=pooled_transport(2, connection_timeout=1, read_timeout=1),
                                    retry_policy=LinearRetry(retry_total=0))
        thread = threading.Thread(target=lambda: _record_failure(outcome, container.get_container_properties))
        thread.start()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the request was still waiting a minute later"
    assert outcome and isinstance(outcome[0], ServiceResponseError)


def test_control_queue_and_destination_clients_carry_their_timeouts(settings: Settings) -> None:
    from shared.control.export_queue import build_export_queue
    from shared.control.store import build_control_container
    from shared.destinations.clients import ClientFactory

    transports = {
        "control": build_control_container(settings)._config.transport,
        "destinations": ClientFactory(settings).sdk_options()["transport"],
    }
    for name, transport in transports.items():
        assert transport.connection_config.timeout == 10, name
        assert transport.connection_config.read_timeout == settings.request_timeout_seconds, name
        assert transport.connection_config.data_block_size == READ_BLOCK_BYTES, name
    queue = build_export_queue(settings)  # intake waits for it before answering: seconds, not minutes
    assert queue is not None
    for client in (queue.queue, queue.poison):
        assert (client._config.transport.connection_config.timeout,
                client._config.transport.connection_config.read_timeout) == (5, 10)


def _record_failure(outcome: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except BaseException as exc:
        outcome.append(exc)


def test_a_ca_bundle_is_looked_at_once_per_host_not_once_per_request(
        bare: pytest.MonkeyPatch, azurite: Azurite, tmp_path: Path) -> None:
    """requests asks the file system whether a CA bundle path is a folder on every request; the adapter asks once
    per host and bundle, and still answers each with the pool key requests would have built."""
    from azure.storage.blob import BlobServiceClient
    from requests import Request

    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    bare.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    transport = pooled_transport(4)
    adapter = transport.session.get_adapter("http://")  # type: ignore[union-attr]
    assert isinstance(adapter, PoolKeyCachingAdapter)
    looked: list[str] = []
    real_isdir = os.path.isdir
    bare.setattr(os.path, "isdir", lambda path: looked.append(path) or real_isdir(path))
    service = BlobServiceClient.from_connection_string(azurite.connection_string, transport=transport)
    for _ in range(5):
        service.get_service_properties()
    assert looked.count(str(bundle)) == 1
    request = Request("GET", "https://account.blob.core.windows.net/c/b").prepare()
    assert adapter.build_connection_pool_key_attributes(request, str(bundle)) == (
        {"scheme": "https", "host": "account.blob.core.windows.net", "port": None},
        {"ca_certs": str(bundle), "cert_reqs": "CERT_REQUIRED"})


def test_storage_requests_go_straight_to_the_adapter(bare: pytest.MonkeyPatch, azurite: Azurite) -> None:
    """What the storage SDK sends (small and chunked uploads, conditional writes, ranged and streamed downloads,
    listings, deletes) goes through the direct session, not `Session.request`, and arrives whole; a response that
    is not streamed is read at once, so its connection serves the next request (one connection for them all)."""
    import requests
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError
    from azure.storage.blob import ContainerClient

    ordinary: list[str] = []
    real_request = requests.Session.request
    bare.setattr(requests.Session, "request", lambda self, method, url, *a, **k: ordinary.append(url)
                 or real_request(self, method, url, *a, **k))
    transport = pooled_transport(1)
    container = ContainerClient.from_connection_string(azurite.connection_string, "direct-session",
                                                       transport=transport, max_single_put_size=1024 * 1024,
                                                       max_block_size=1024 * 1024, max_chunk_get_size=1024 * 1024,
                                                       max_single_get_size=1024 * 1024)
    container.create_container()
    body = os.urandom(3 * 1024 * 1024 + 17)  # over the single put size: blocks and a block list
    container.upload_blob("big/blob", body, metadata={"state": "pending"})
    small = container.get_blob_client("small").upload_blob(b"{}", overwrite=True)
    with pytest.raises(ResourceModifiedError):
        container.upload_blob("small", b"[]", overwrite=True, etag='"0x1"',
                              match_condition=MatchConditions.IfNotModified)
    assert container.download_blob("big/blob").readall() == body
    assert b"".join(container.download_blob("big/blob", offset=5, length=2_000_000).chunks()) == body[5:2_000_005]
    assert [b.name for b in container.list_blobs(include=["metadata"])] == ["big/blob", "small"]
    assert container.get_blob_client("small").get_blob_properties().etag == small["etag"]
    container.delete_blob("small")
    container.delete_container()
    assert ordinary == []
    pools = transport.session.get_adapter("http://").poolmanager.pools  # type: ignore[union-attr]
    assert [pools[key].num_connections for key in list(pools.keys())] == [1]


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(bare: pytest.MonkeyPatch) -> None:
    """The direct session checks headers as requests does: a value that would split the request (a metadata
    value with a line break, say) is an error, and the server sees nothing."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError
    from azure.storage.blob import ContainerClient, LinearRetry

    with running_server() as server:
        container = ContainerClient(server.url_for("/devstoreaccount1"), "control", credential=None,
                                    transport=pooled_transport(2), retry_policy=LinearRetry(retry_total=0))
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            container.upload_blob("x", b"", metadata={"a": "1\r\nx-ms-meta-b: 2"})
        assert server.log == []


def test_a_cookie_an_endpoint_sets_is_never_sent_back(bare: pytest.MonkeyPatch) -> None:
    """Destinations share one transport: a cookie set by one endpoint's answer must not ride on later requests
    (storage sets none)."""
    from werkzeug import Response as WerkzeugResponse

    with running_server() as server:
        server.expect_request("/c/a").respond_with_response(
            WerkzeugResponse("", status=200, headers={"Set-Cookie": "session=planted; Path=/"}))
        server.expect_request("/c/b").respond_with_data("")
        session = pooled_transport(2).session
        assert session is not None
        for path in ("/c/a", "/c/b"):
            session.request("GET", server.url_for(path), headers={}, allow_redirects=False, timeout=(5, 5))
        assert [request.headers.get("Cookie") for request, _ in server.log] == [None, None]
