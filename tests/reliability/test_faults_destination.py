"""Faults at the destination's endpoint: storage stopped mid-pass, storage answering 503/429 for a while.

The destination lives in a second Azurite (not the control storage's), reached directly or through a
fault-injecting proxy. Each test ends with the batch landed exactly once and the records counted at the
destination equal to the records accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.export.runner import Hooks, run_export_pass
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.fault_helpers import (
    all_landed,
    assert_landed_exactly_once,
    report,
    run_until,
    running_azurite,
    scaled,
    state,
)
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite
from tests.support.fault_proxy import FaultProxy
from tests.support.sas import container_sas, sas_destination


@pytest.fixture(scope="module")
def dest_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path_factory, "dest-azurite")


@pytest.fixture
def dest_container(dest_azurite: Azurite) -> Iterator[ContainerClient]:
    if dest_azurite.process is None:  # a failed test may have left it stopped
        dest_azurite.start()
    service = BlobServiceClient.from_connection_string(dest_azurite.connection_string)
    container = service.create_container(f"dest-{uuid.uuid4().hex[:16]}")
    yield container
    container.delete_container()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small parts, so a pass commits several files and a fault can fall between two of them.
    return settings.model_copy(update={"part_max_bytes": 20_000})


@pytest.fixture
def proxy(dest_azurite: Azurite) -> Iterator[FaultProxy]:
    server = FaultProxy(upstream_port=dest_azurite.port).start()
    yield server
    server.stop()


def test_destination_storage_stopped_mid_pass_then_restarted(
    api: httpx.Client, services: Services, dest_azurite: Azurite, dest_container: ContainerClient
) -> None:
    dest = make_destination(api, dest_azurite, dest_container, compression="gzip")
    records = list(sample_data.events(scaled(600), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    commits: list[str] = []

    def stop_before_third_commit(name: str) -> None:
        commits.append(name)
        if len(commits) == 3:
            dest_azurite.stop()

    no_sdk_retry = with_settings(services, storage_retry_total=0)  # connection refused fails at once
    try:
        first = run_export_pass(no_sdk_retry, hooks=Hooks(before_commit=stop_before_third_commit))
        assert (first.landed, first.retried, first.failed) == (0, 1, 0)
        after_stop = state(services, bid)
        assert after_stop["state"] == "pending"
        assert after_stop["last_error"]["code"] == "endpoint_unreachable"
        assert f"the endpoint {dest_azurite.account_url} is unreachable" in after_stop["last_error"]["message"]
        # Every partition's first part is on record before any is written, every further part before its
        # commit: whatever was committed (two) or about to be (the third) is known to the next attempt.
        assert set(commits) <= set(after_stop["written_blobs"])
        assert {name.rsplit("/", 1)[0] for name in after_stop["written_blobs"]} == {
            name.rsplit("/", 1)[0] for name in after_stop["written_blobs"] if name.endswith("-0000.jsonl.gz")}

        still_down = run_export_pass(no_sdk_retry)  # a pass while it is still down: retried again, nothing lost
        assert still_down.retried == 1
    finally:
        dest_azurite.start()
    passes = run_until(services, all_landed(services, [bid]))
    final = state(services, bid)
    counts = assert_landed_exactly_once(dest_container, {bid: len(records)})
    assert final["total_attempts"] == 2 + len(passes)
    assert final["last_error"] is None
    report("destination_stopped_mid_pass", attempts=final["total_attempts"], reason=after_stop["last_error"]["code"],
           **counts)


def proxied_destination(api: httpx.Client, proxy: FaultProxy, container: ContainerClient) -> str:
    token = container_sas(container.container_name, delete=True)
    body = sas_destination(proxy.account_url, container.container_name, token, compression="none")
    response = api.put("/api/destinations/busy", json=body)
    assert response.status_code in (200, 201), response.text
    return "busy"


def test_a_short_503_burst_is_absorbed_by_sdk_retries(
    api: httpx.Client, services: Services, proxy: FaultProxy, dest_container: ContainerClient
) -> None:
    dest = proxied_destination(api, proxy, dest_container)
    records = list(sample_data.events(scaled(300), hours=1))
    bid = post_batch(api, dest, records)["batch_id"]
    # The first data file's write (a single Put Blob: the file fits in one block) is refused once with 503
    # ServerBusy; the SDK's own retry carries it.
    proxy.fail(503, times=1, retry_after=1,
               when=lambda method, path: method == "PUT" and "_manifests" not in path and "comp=" not in path)

    summary = run_export_pass(services)
    assert summary.landed == 1
    final = state(services, bid)
    assert final["attempts"] == 1 and final["last_error"] is None
    assert proxy.injected(503) == 1
    counts = assert_landed_exactly_once(dest_container, {bid: len(records)})
    report("destination_503_burst", injected=proxy.injected(), attempts=final["total_attempts"], **counts)


@pytest.mark.parametrize("status", [503, 429])
def test_destination_busy_for_a_while_lands_after_batch_retries(
    api: httpx.Client, services: Services, proxy: FaultProxy, dest_container: ContainerClient, status: int
) -> None:
    dest = proxied_destination(api, proxy, dest_container)
    records = list(sample_data.events(scaled(400), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    proxy.fail(status, seconds=1.5, retry_after=1)
    # A real backoff (0.1 s doubling, jittered) so eight attempts outlast the trouble.
    backing_off = with_settings(services, retry_base_seconds=0.1)

    passes = run_until(backing_off, all_landed(services, [bid]), passes=80, pause=0.1)
    final = state(services, bid)
    assert proxy.injected(status) >= 1
    assert sum(p.retried for p in passes) == final["total_attempts"] - 1
    if status == 429:
        # The storage SDK does not retry 429 itself (Azure Storage throttles with 503): the batch-level
        # retry carries it, so at least one attempt failed with a plain-words reason first.
        assert final["total_attempts"] > 1
    counts = assert_landed_exactly_once(dest_container, {bid: len(records)})
    report(f"destination_{status}_for_1.5s", injected=proxy.injected(), attempts=final["total_attempts"],
           passes=len(passes), **counts)


def test_busy_destination_reason_is_plain_words(
    api: httpx.Client, services: Services, proxy: FaultProxy, dest_container: ContainerClient
) -> None:
    dest = proxied_destination(api, proxy, dest_container)
    bid = post_batch(api, dest, list(sample_data.events(20, hours=1)))["batch_id"]
    proxy.fail(429, times=1, retry_after=1)
    assert run_export_pass(services).retried == 1
    error = api.get(f"/api/batches/{bid}").json()["last_error"]
    assert error["code"] == "destination_busy"
    assert error["message"] == (
        "the destination storage answered 429 (Too Many Requests) and kept doing so after retries: "
        "it is throttling requests or briefly unavailable"
    )
    assert run_export_pass(services).landed == 1
    assert_landed_exactly_once(dest_container, {bid: 20})


def test_busy_beyond_max_attempts_fails_visibly_then_retry_lands(
    api: httpx.Client, services: Services, proxy: FaultProxy, dest_container: ContainerClient
) -> None:
    dest = proxied_destination(api, proxy, dest_container)
    records = list(sample_data.events(scaled(100), hours=1))
    bid = post_batch(api, dest, records)["batch_id"]
    rule = proxy.fail(503, when=lambda method, path: True)  # down until cleared
    impatient = with_settings(services, max_attempts=2, storage_retry_total=0)

    outcomes = [run_export_pass(impatient) for _ in range(2)]
    assert [(o.retried, o.failed) for o in outcomes] == [(1, 0), (0, 1)]
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed"
    assert status["last_error"]["message"].startswith("gave up after 2 attempts: the destination storage answered 503")
    assert [b["batch_id"] for b in api.get("/api/batches", params={"state": "failed"}).json()["batches"]] == [bid]

    proxy.clear()
    assert api.post(f"/api/batches/{bid}/retry").json()["state"] == "pending"
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(dest_container, {bid: len(records)})
    report("destination_503_beyond_max_attempts", injected=rule.hits, attempts=state(services, bid)["total_attempts"],
           **counts)


def with_settings(services: Services, **changes: object) -> Services:
    return build_services(services.settings.model_copy(update=changes), secrets=services.secrets)
