"""Destination faults a customer must fix: SAS expired after intake, SAS without write, container deleted.

Each batch fails with a plain-words reason (no endless retrying), and after the fix (a fresh SAS through
PUT /api/destinations/{id}, or the container recreated and POST /api/batches/{id}/retry) it lands once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.destinations.sas import format_time, parse_sas
from shared.export.runner import Hooks, run_export_pass
from shared.services import Services
from tests.reliability.fault_helpers import assert_landed_exactly_once, report, scaled, secret_name_of, state
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas


def test_sas_expired_between_intake_and_export(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    dest = make_destination(api, azurite, fresh_container, expiry=soon)
    records = list(sample_data.events(scaled(200), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]  # accepted while the SAS is still valid
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.5)

    assert run_export_pass(services).failed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed" and status["attempts"] == 1  # no pointless retrying
    assert status["last_error"]["code"] == "sas_expired"
    assert status["last_error"]["message"] == (
        f"the SAS token expired on {format_time(soon)}; renew it and update the destination"
    )

    make_destination(api, azurite, fresh_container, dest_id=dest)  # the customer pastes a fresh SAS
    assert api.get(f"/api/batches/{bid}").json()["state"] == "pending"
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    report("sas_expired_after_intake", reason="sas_expired", attempts=state(services, bid)["total_attempts"],
           **counts)


def test_sas_without_write_permission_fails_then_lands_after_update(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    records = list(sample_data.events(scaled(200), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    # A read-only SAS lands in the secret store without passing our save-time check (edited in the vault).
    read_only = container_sas(fresh_container.container_name, read=True, write=False)
    assert not parse_sas(read_only).can_write
    name = secret_name_of(services, dest)
    services.secrets.store.set_secret(name, read_only)
    services.secrets.invalidate(name)

    assert run_export_pass(services).failed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed" and status["attempts"] == 1
    assert status["last_error"]["code"] == "sas_permission"
    assert status["last_error"]["message"] == (
        "the SAS token does not allow this operation on the container; generate a container SAS with read and write"
    )
    assert [b.name for b in fresh_container.list_blobs()] == []

    make_destination(api, azurite, fresh_container, dest_id=dest)
    assert run_export_pass(services).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    report("sas_read_only", reason="sas_permission", attempts=state(services, bid)["total_attempts"], **counts)


def test_container_deleted_mid_pass_fails_then_retry_lands(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="gzip")
    records = list(sample_data.events(scaled(600), hours=2))
    bid = post_batch(api, dest, records)["batch_id"]
    small_parts = type(services)(services.settings.model_copy(update={"part_max_bytes": 20_000}),
                                 services.control, services.secrets)
    commits: list[str] = []

    def delete_container_before_third_commit(name: str) -> None:
        commits.append(name)
        if len(commits) == 3:
            fresh_container.delete_container()

    assert run_export_pass(small_parts, hooks=Hooks(before_commit=delete_container_before_third_commit)).failed == 1
    status = api.get(f"/api/batches/{bid}").json()
    assert status["state"] == "failed"
    assert status["last_error"]["code"] == "container_not_found"
    assert status["last_error"]["message"] == (
        f"the container '{fresh_container.container_name}' at {azurite.account_url} does not exist: "
        "create it, or fix the destination's container name"
    )

    fresh_container.create_container()
    assert api.post(f"/api/batches/{bid}/retry").json()["state"] == "pending"
    assert run_export_pass(small_parts).landed == 1
    counts = assert_landed_exactly_once(fresh_container, {bid: len(records)})
    assert counts["data_files"] > 3
    report("container_deleted_mid_pass", reason="container_not_found",
           attempts=state(services, bid)["total_attempts"], **counts)
