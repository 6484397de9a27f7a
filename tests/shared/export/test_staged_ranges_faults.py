"""The one staged blob of a batch under storage faults (issue 13, item 2): a crash between the staged blob and
the state leaves only garbage, which the export pass collects; a block refused once is sent again whole.

Control storage is reached through the fault proxy here; "crash" is storage going away for good at that
point, so that intake's own clean-up cannot run either and what is left is exactly what a crash leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry

from scripts import sample_data
from shared.control import batches
from shared.control.store import ControlStore
from shared.export.runner import run_export_pass
from shared.secrets.cache import CachedSecrets
from shared.secrets.local_store import LocalSecretStore
from shared.services import Services
from shared.settings import Settings
from tests.shared.export_helpers import jsonl_records, make_destination
from tests.support.azurite import Azurite, connection_string
from tests.support.fault_proxy import FaultProxy

SMALL_BLOCKS = 64 * 1024
LEFT_BEHIND = ("staged/", "index/batches/open/", "states/")


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    server = FaultProxy(upstream_port=azurite.port).start()
    yield server
    server.stop()


@pytest.fixture
def services(settings: Settings, proxy: FaultProxy) -> Services:
    """Control storage through the proxy, with one quick in-call retry (the app's backoff takes seconds)."""
    conn = connection_string(proxy.port)
    container = BlobServiceClient.from_connection_string(
        conn, retry_policy=LinearRetry(backoff=0.1, random_jitter_range=0, retry_total=1), connection_timeout=5,
        read_timeout=10,
    ).get_container_client(settings.control_container)
    secrets = CachedSecrets(LocalSecretStore(settings.local_secrets_path), settings.secret_cache_ttl_seconds)
    return Services(settings.model_copy(update={"control_storage_connection": conn}), ControlStore(container),
                    secrets)


def comp(path: str) -> str:
    """The operation a blob request is: 'block' (Put Block), 'blocklist' (its commit), '' (Put Blob, ...)."""
    return parse_qs(urlsplit(path).query).get("comp", [""])[0]


def names(services: Services) -> list[str]:
    return sorted(item.name for prefix in LEFT_BEHIND for item in services.control.list(prefix))


def post(api: httpx.Client, dest: str, body: bytes) -> httpx.Response:
    return api.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=body,
                    headers={"content-type": "application/x-ndjson"})


@pytest.mark.parametrize("after", ["blocklist", "block"], ids=["after its commit", "after its first block"])
def test_a_crash_while_staging_leaves_only_garbage_that_the_export_pass_collects(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch, after: str,
) -> None:
    monkeypatch.setattr("shared.control.store.STAGE_BLOCK_BYTES", SMALL_BLOCKS)
    dest = make_destination(api, azurite, fresh_container, compression="none")
    body = sample_data.ndjson(list(sample_data.events(2_000, seed=21, hours=200, shapes=("mixpanel",))))
    assert len(body) > 4 * SMALL_BLOCKS
    down = threading.Event()

    def from_then_on(method: str, path: str) -> bool:
        if down.is_set():
            return True
        if method == "PUT" and "/staged/" in path and comp(path) == after:
            down.set()  # this request goes through; storage is gone for everything after it
        return False

    proxy.fail(503, when=from_then_on)
    refused = post(api, dest, body)
    assert refused.status_code == 503, refused.text
    proxy.clear()

    left = names(services)
    assert not any(name.startswith("states/") for name in left)  # never a batch: no state, no 202
    assert api.get("/api/batches").json()["batches"] == []
    staged = [name for name in left if name.startswith("staged/")]
    # After the commit: the one staged blob. Before it: blocks no listing shows (the service drops them
    # after a week), so nothing.
    assert len(staged) == (1 if after == "blocklist" else 0)
    assert len([name for name in left if name.startswith("index/batches/open/")]) == 1  # its staging marker

    now = run_export_pass(services)  # too young to be garbage: an intake may still be writing it
    assert (now.landed, now.failed) == (0, 0) and names(services) == left
    later = run_export_pass(services, clock=lambda: batches.now_utc() + timedelta(minutes=16))
    assert (later.landed, later.failed) == (0, 0)
    assert names(services) == []

    accepted = post(api, dest, body)  # the platform's retry
    assert accepted.status_code == 202, accepted.text
    assert run_export_pass(services).landed == 1
    assert len(jsonl_records(fresh_container)) == 2_000


def test_a_block_refused_once_is_sent_again_whole_and_every_record_lands_once(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK sends a block again after a 503 (each block's first try is refused here), rewinding the span of
    the partitions' buffers it reads from."""
    monkeypatch.setattr("shared.control.store.STAGE_BLOCK_BYTES", SMALL_BLOCKS)
    dest = make_destination(api, azurite, fresh_container, compression="none")
    records = list(sample_data.events(1_000, seed=22, hours=100, shapes=("mixpanel",)))
    refused: set[str] = set()

    def first_try_of_each_block(method: str, path: str) -> bool:
        block = parse_qs(urlsplit(path).query).get("blockid", [""])[0]
        if method != "PUT" or comp(path) != "block" or block in refused:
            return False
        refused.add(block)
        return True

    body = sample_data.ndjson(records)
    rule = proxy.fail(503, when=first_try_of_each_block)
    accepted = post(api, dest, body)
    assert accepted.status_code == 202, accepted.text
    assert rule.hits == len(refused) == -(-len(body) // SMALL_BLOCKS) > 1

    assert run_export_pass(services).landed == 1  # the staged ranges hold what their SHA-256s say
    landed = sorted(r["properties"]["$insert_id"] for r in jsonl_records(fresh_container))
    assert landed == sorted(r["properties"]["$insert_id"] for r in records)
