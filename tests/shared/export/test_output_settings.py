"""zstd files and access tiers end to end against Azurite, and the output settings a destination refuses: an
unknown format, compression, layout or tier, or a combination that makes no sense, is a 422 naming the field
through the real server, and nothing is saved."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest
import zstandard
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from tests.shared.export_helpers import blob_names, data_files, make_destination, manifests, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_zstd_files_are_one_frame_each_with_their_size_and_checksum(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, fmt: str,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format=fmt, compression="zstd")
    records = list(sample_data.events(300, hours=2))
    post_batch(api, dest, records)
    small_parts = services.settings.model_copy(update={"part_max_bytes": 10_000})
    assert run_export_pass(build_services(small_parts, secrets=services.secrets)).landed == 1
    names = data_files(fresh_container)
    assert len(names) > 2 and all(name.endswith(f".{fmt}.zst") for name in names)
    landed: list[Any] = []
    for name, entry in zip(names, sorted(manifests(fresh_container)[0]["files"], key=lambda f: f["name"]),
                           strict=True):
        frame = fresh_container.download_blob(name).readall()
        parameters = zstandard.get_frame_parameters(frame)
        content = zstandard.ZstdDecompressor().decompress(frame)  # checks the size and the checksum
        assert parameters.content_size == len(content) and parameters.has_checksum
        assert zstandard.ZstdDecompressor().decompressobj().decompress(frame) == content  # one frame holds it all
        properties = fresh_container.get_blob_client(name).get_blob_properties()
        assert properties.content_settings.content_type == "application/zstd"
        assert entry["bytes"] == len(frame)
        if fmt == "jsonl":
            landed += [orjson.loads(line) for line in content.splitlines()]
        else:
            landed += csv_rows_of(content)
        assert entry["records"] == (len(content.splitlines()) if fmt == "jsonl" else len(csv_rows_of(content)))
    assert len(landed) == len(records)
    if fmt == "jsonl":
        assert sorted(landed, key=orjson.dumps) == sorted(records, key=orjson.dumps)


def csv_rows_of(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode(), newline="")))


@pytest.mark.parametrize("tier", ["hot", "cool", "cold"])
def test_every_file_and_manifest_is_written_in_the_destinations_access_tier(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, tier: str,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet", access_tier=tier)
    assert api.get(f"/api/destinations/{dest}").json()["access_tier"] == tier
    post_batch(api, dest, list(sample_data.events(40, hours=2)))
    post_batch(api, dest, list(sample_data.profiles(5)), record_type="profiles")
    assert run_export_pass(services).landed == 2
    names = [name for name in blob_names(fresh_container) if not name.endswith("_export_probe.txt")]
    assert len(names) == 5  # three data files and two manifests
    for name in names:
        properties = fresh_container.get_blob_client(name).get_blob_properties()
        assert properties.blob_tier == tier.capitalize(), (name, properties.blob_tier)


def test_a_large_file_committed_from_blocks_is_in_the_tier_too(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none", access_tier="cool")
    post_batch(api, dest, list(sample_data.events(2000, hours=1)))
    small_blocks = services.settings.model_copy(update={"block_bytes": 64 * 1024})
    assert run_export_pass(build_services(small_blocks, secrets=services.secrets)).landed == 1
    [name] = data_files(fresh_container)
    blob = fresh_container.get_blob_client(name)
    assert len(blob.get_block_list("committed")[0]) > 1
    assert blob.get_blob_properties().blob_tier == "Cool"


def test_without_an_access_tier_files_take_the_accounts_default(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    assert api.get(f"/api/destinations/{dest}").json()["access_tier"] is None
    post_batch(api, dest, list(sample_data.events(10, hours=1)))
    assert run_export_pass(services).landed == 1
    properties = fresh_container.get_blob_client(data_files(fresh_container)[0]).get_blob_properties()
    assert properties.blob_tier_inferred in (True, None)  # never set on the blob itself


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"format": "avro"}, "format", "'jsonl', 'csv' or 'parquet'"),
    ({"compression": "brotli"}, "compression", "'gzip', 'zstd', 'snappy' or 'none'"),
    ({"format": "csv", "compression": "snappy"}, "compression", "snappy is a Parquet codec"),
    ({"format": "csv", "parquet_columns": "typed"}, "parquet_columns", "for format parquet only"),
    ({"parquet_columns": "json"}, "parquet_columns", "for format parquet only"),
    ({"format": "parquet", "parquet_columns": "wide"}, "parquet_columns", "'typed' or 'json'"),
    ({"access_tier": "archive"}, "access_tier", "'hot', 'cool' or 'cold'"),
    ({"access_tier": "Cool"}, "access_tier", "'hot', 'cool' or 'cold'"),
    ({"path_template": "{type}/{date}/{hour}/{campaign}/"}, "path_template", "unknown placeholder {campaign}"),
    ({"partitions": "hour"}, "partitions", "Extra inputs are not permitted"),
])
def test_an_unknown_or_senseless_output_setting_is_a_422_naming_the_field_and_nothing_is_saved(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, changes: dict[str, Any], field: str,
    words: str,
) -> None:
    token = container_sas(fresh_container.container_name, delete=True)
    body = sas_destination(azurite.account_url, fresh_container.container_name, token, **changes)
    response = api.put("/api/destinations/acme", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == [field], error
    assert words in error["details"][0]["message"] and field in error["message"]
    assert api.get("/api/destinations/acme").status_code == 404
    assert blob_names(fresh_container) == []  # not even the probe: the body is refused before it


def test_switching_a_destination_keeps_its_new_settings_and_applies_them_to_later_batches(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container)
    first = post_batch(api, dest, list(sample_data.events(10, hours=1)))["batch_id"]
    assert run_export_pass(services).landed == 1
    make_destination(api, azurite, fresh_container, format="parquet", layout="dated", access_tier="cool")
    second = post_batch(api, dest, list(sample_data.events(10, hours=1)))["batch_id"]
    assert run_export_pass(services).landed == 1
    assert data_files(fresh_container) == [f"events/2026/11/20/09/{second}-0000.parquet",
                                           f"events/date=2026-11-20/hour=09/{first}-0000.jsonl.gz"]
    make_destination(api, azurite, fresh_container)  # back to the defaults: stored as before they existed
    stored = services.control.get("destinations/acme.json")
    assert stored is not None and not {"layout", "access_tier", "parquet_columns"} & stored.data.keys()
