"""A wide CSV partition (issue 11, item 12): parts are sized by the bytes they write, not by the staged lines.

Every CSV row writes every column of its partition, so records of a few staged bytes each can write rows a
hundred times longer. PART_MAX_BYTES bounds each part's output (one row past it at most), as it does JSONL's.
"""

from __future__ import annotations

import httpx
from azure.storage.blob import ContainerClient

from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from tests.shared.export_helpers import csv_rows, data_files, make_destination, manifests, post_batch
from tests.support.azurite import Azurite

PART_MAX_BYTES = 20_000
RECORDS = 300
KEYS = 600  # the partition's columns: event, ts and 600 properties; each record sets two of them


def test_csv_parts_of_a_wide_partition_stay_within_part_max_bytes(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="csv", compression="none")
    records = [{"event": "e", "ts": 1700000000 + n, "properties": {f"k{n % KEYS}": n, f"k{(n * 7) % KEYS}": "x"}}
               for n in range(RECORDS)]  # about 70 staged bytes each; each CSV row writes 600+ commas
    post_batch(api, dest, records)
    small_parts = build_services(services.settings.model_copy(update={"part_max_bytes": PART_MAX_BYTES}),
                                 secrets=services.secrets)

    assert run_export_pass(small_parts).landed == 1

    files = data_files(fresh_container)
    sizes = {name: fresh_container.get_blob_client(name).get_blob_properties().size for name in files}
    longest_row = max(len(",".join([""] * (KEYS + 2))) + 40, 1)  # a row's commas and its few values
    assert len(files) > 1
    assert all(size <= PART_MAX_BYTES + longest_row for size in sizes.values()), sizes
    assert sum(len(csv_rows(fresh_container, name)) for name in files) == RECORDS
    assert manifests(fresh_container)[0]["records"] == RECORDS
