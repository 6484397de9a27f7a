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
    PoolKeyCachingAdapter,
    http_options,
    pooled_transport,
)
from shared.settings import Settings
from tests.support.azurite import Azurite
from tests.support.http_servers import silent_server


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_SETTINGS, *CA_BUNDLE_SETTINGS):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_no_proxy_and_no_bundle_read_nothing_from_the_environment(bare: pytest.MonkeyPatch) -> None:
    assert http_options() == {"use_env_settings": False}
    assert pooled_transport(4).session.trust_env is False  # type: ignore[union-attr]


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
