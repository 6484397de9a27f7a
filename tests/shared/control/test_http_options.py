"""Storage clients read the environment's HTTP settings once (shared.control.store.http_options), not on every
request: requests looked for ~/.netrc on each one, 10-20% of intake's CPU."""

from __future__ import annotations

import pytest

from shared.control.store import CA_BUNDLE_SETTINGS, PROXY_SETTINGS, http_options, pooled_transport
from tests.support.azurite import Azurite


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
