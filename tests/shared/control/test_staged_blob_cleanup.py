"""Every clean-up of staged records finds a batch's one staged blob (issue 13, item 2): the rules are those of
one blob per partition, and each still leaves nothing of the batch's records behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.control import batches
from shared.control.retention import delete_staged_records, sweep
from shared.export.runner import run_export_pass
from shared.services import Services
from shared.settings import Settings
from tests.shared.export_helpers import make_destination, post_batch
from tests.support.azurite import Azurite


def staged(services: Services) -> list[str]:
    return sorted(item.name for item in services.control.list(batches.STAGED_PREFIX))


def staging_id(blob: str) -> str:
    return blob.split("/")[2]  # staged/{batch_id}/{staging_id}/records.jsonl


CLEAN_UPS: dict[str, Callable[[Services, str, str], None]] = {
    "an intake that never committed (discard_staging)":
        lambda services, batch_id, blob: batches.discard_staging(services.control, batch_id, "no-marker"),
    "the loser of an Idempotency-Key race (discard_staged_attempt)":
        lambda services, batch_id, blob: batches.discard_staged_attempt(services.control, batch_id, staging_id(blob)),
    "retention (delete_staged_records)":
        lambda services, batch_id, blob: delete_staged_records(services.control, batch_id),
}


@pytest.mark.parametrize("clean_up", CLEAN_UPS.values(), ids=CLEAN_UPS.keys())
def test_each_clean_up_deletes_the_batchs_one_staged_blob(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    clean_up: Callable[[Services, str, str], None],
) -> None:
    make_destination(api, azurite, fresh_container)
    batch_id = post_batch(api, "acme", list(sample_data.events(60, hours=12)))["batch_id"]
    [blob] = staged(services)
    assert len(batches.get_state(services.control, batch_id).partitions) == 12
    other = post_batch(api, "acme", list(sample_data.events(5, seed=3)))["batch_id"]  # left alone

    clean_up(services, batch_id, blob)
    assert [name.split("/")[1] for name in staged(services)] == [other]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"staged_retention_hours": 1})


def test_a_forced_delete_of_the_destination_and_retention_after_landing_find_the_one_blob(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    make_destination(api, azurite, fresh_container)
    landed = post_batch(api, "acme", list(sample_data.events(40, hours=8)))["batch_id"]
    assert run_export_pass(services).landed == 1
    pending = post_batch(api, "acme", list(sample_data.events(40, seed=4, hours=8)))["batch_id"]
    assert [name.split("/")[1] for name in staged(services)] == sorted([landed, pending])

    assert api.delete("/api/destinations/acme", params={"force": "true"}).status_code == 204
    assert [name.split("/")[1] for name in staged(services)] == [landed]  # the pending batch's records went
    sweep(services.control, services.settings, moment=batches.now_utc() + timedelta(hours=2))
    assert staged(services) == []  # and the landed one's, once its retention passed
