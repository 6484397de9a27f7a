"""A Parquet part holds its records as Arrow arrays until it closes, so it closes at PARQUET_PART_MAX_BYTES of
staged records even when PART_MAX_BYTES is larger (a worker's peak RSS grew about 1.6x a part's staged bytes)."""

from __future__ import annotations

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.export import batch_writer
from shared.export.batch_writer import PARQUET_PART_MAX_BYTES, ExportPlan
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import data_files, make_destination, post_batch
from tests.shared.parquet_helpers import table_of
from tests.support.azurite import Azurite


def plan(fmt: str, part_max_bytes: int) -> ExportPlan:
    return ExportPlan(run_id="b1", destination_id="acme", record_type="events", prefix="", fmt=fmt,
                      compression="zstd" if fmt == "parquet" else "gzip", export_date="2026-11-20",
                      part_max_bytes=part_max_bytes, block_bytes=4 << 20, max_in_flight=2)


def test_only_parquet_parts_are_held_to_their_own_budget() -> None:
    assert plan("parquet", 100 << 20).part_budget == PARQUET_PART_MAX_BYTES == 32 << 20
    assert plan("parquet", 1 << 20).part_budget == 1 << 20  # a smaller PART_MAX_BYTES still bounds it
    assert plan("jsonl", 100 << 20).part_budget == plan("csv", 100 << 20).part_budget == 100 << 20


def test_a_parquet_partition_over_the_budget_lands_in_several_complete_parts(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_writer, "PARQUET_PART_MAX_BYTES", 16 * 1024)  # a small budget, as 32 MiB is to 1M
    make_destination(api, azurite, fresh_container, format="parquet", compression="zstd")
    records = [{"event": "signup", "ts": 1763629200 + n, "n": n, "note": "x" * 100} for n in range(600)]
    post_batch(api, "acme", records)  # about 90 KB staged, all in one hour
    assert run_export_pass(services).landed == 1
    parts = sorted(data_files(fresh_container))
    assert len(parts) >= 5 and all(name.endswith(f"-{i:04d}.parquet") for i, name in enumerate(parts))
    numbers = [n for name in parts for n in table_of(fresh_container.download_blob(name).readall()).column("n")
               .to_pylist()]
    assert sorted(numbers) == list(range(600))  # every record once, across the parts
