"""Filters end to end against Azurite: events left out by name or pattern and dropped properties never reach the
container, in any format; the manifest's counts add up; a batch filtered out whole lands with an empty manifest
and no files; bad filters are a 422 through the real server naming the field."""

from __future__ import annotations

import gzip
import io
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
import zstandard
from azure.storage.blob import ContainerClient

from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import blob_names, csv_rows, data_files, make_destination, manifests, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination

SECRET_EMAIL = "ada.secret@example.com"
SECRET_PHONE = "+4915799999999"


def batch() -> list[dict[str, Any]]:
    """Ten events of five names (two each, an hour apart), each carrying personal data in two places."""
    names = ["Signed Up", "Debug Ping", "debug.trace", "Charged", "Product Viewed"]
    return [{"event": name, "properties": {"time": 1795165200 + hour * 3600 + i, "distinct_id": f"u{i}",
                                           "$email": SECRET_EMAIL, "amount": i, "keep": "yes"},
             "context": {"traits": {"phone": SECRET_PHONE, "plan": "pro"}}}
            for hour in (0, 1) for i, name in enumerate(names)]


def container_text(container: ContainerClient) -> bytes:
    """Every byte in the container, each file decompressed (gzip, zstd) and each Parquet file's values as text."""
    out = []
    for name in blob_names(container):
        data = container.download_blob(name).readall()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        elif name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().decompress(data)
        elif name.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            data = orjson.dumps(table.to_pylist(), default=str) + str(table.schema).encode()
        out.append(data)
    return b"\n".join(out)


def read_records(container: ContainerClient, name: str) -> list[dict[str, Any]]:
    data = container.download_blob(name).readall()
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data)).to_pylist()
    if name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompress(data)
    elif name.endswith(".gz"):
        data = gzip.decompress(data)
    if ".csv" in name:
        return csv_rows(container, name) if not name.endswith(".zst") else []
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize(("fmt", "compression"), [("jsonl", "gzip"), ("csv", "zstd"), ("parquet", "zstd")])
def test_excluded_events_and_dropped_properties_never_reach_the_container(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, fmt: str,
    compression: str,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format=fmt, compression=compression,
                            exclude_events=["Debug *", "debug.*"],
                            drop_properties=["properties.$email", "context.traits.phone"])
    records = batch()
    batch_id = post_batch(api, dest, records)["batch_id"]
    assert run_export_pass(services).landed == 1

    everything = container_text(fresh_container)
    assert SECRET_EMAIL.encode() not in everything and SECRET_PHONE.encode() not in everything
    assert b"Debug Ping" not in everything and b"debug.trace" not in everything
    assert (b"Signed Up" in everything and b'"plan"' in everything) or b"context.traits.plan" in everything
    [manifest] = manifests(fresh_container)
    assert manifest["batch_id"] == batch_id
    assert (manifest["records_received"], manifest["records_written"], manifest["records"]) == (10, 6, 6)
    assert sum(f["records"] for f in manifest["files"]) == 6
    if fmt == "csv":  # the header leaves the dropped columns out too
        header = zstandard.ZstdDecompressor().decompress(
            fresh_container.download_blob(data_files(fresh_container)[0]).readall()).split(b"\r\n")[0].decode()
        assert "properties.$email" not in header and "context.traits.phone" not in header
        assert "context.traits.plan" in header
    if fmt == "parquet":  # the core columns come from the record as posted; the rest lost the dropped fields
        rows = [row for name in data_files(fresh_container) for row in read_records(fresh_container, name)]
        assert sorted({row["_event_name"] for row in rows}) == ["Charged", "Product Viewed", "Signed Up"]
        assert all(row["properties.keep"] == "yes" and "properties.$email" not in row for row in rows)
    status = api.get(f"/api/batches/{batch_id}").json()
    assert status["records"] == 10 and sum(b["records"] for b in status["blobs"]) == 6


def test_include_patterns_keep_only_matching_events_and_an_object_path_drops_the_whole_object(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="none",
                            include_events=["Charged", "Product *"], exclude_events=["Product Viewed"],
                            drop_properties=["context"])
    post_batch(api, dest, batch())
    assert run_export_pass(services).landed == 1
    landed = [row for name in data_files(fresh_container) for row in read_records(fresh_container, name)]
    assert sorted(row["event"] for row in landed) == ["Charged", "Charged"]
    assert all("context" not in row and row["properties"]["$email"] == SECRET_EMAIL for row in landed)
    kept = [{key: value for key, value in record.items() if key != "context"} for record in batch()
            if record["event"] == "Charged"]
    assert sorted(landed, key=orjson.dumps) == sorted(kept, key=orjson.dumps)  # keys in their order, values as sent


def test_a_batch_filtered_out_whole_lands_with_an_empty_manifest_and_no_files(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet", include_events=["Nothing like it"])
    batch_id = post_batch(api, dest, batch())["batch_id"]
    profiles = post_batch(api, dest, [{"identity": "u1", "name": "kept"}], record_type="profiles")["batch_id"]
    assert run_export_pass(services).landed == 2
    assert [name for name in data_files(fresh_container) if name.startswith("events/")] == []
    by_id = {m["batch_id"]: m for m in manifests(fresh_container)}
    assert by_id[batch_id]["files"] == [] and by_id[batch_id]["records_received"] == 10
    assert by_id[batch_id]["records_written"] == 0
    assert by_id[profiles]["records_written"] == 1  # event filters leave profiles alone
    assert api.get(f"/api/batches/{batch_id}").json()["state"] == "landed"


@pytest.mark.parametrize(("changes", "field"), [
    ({"include_events": [""]}, "include_events"),
    ({"exclude_events": ["x" * 513]}, "exclude_events"),
    ({"exclude_events": "Debug"}, "exclude_events"),
    ({"include_events": ["a\u0000b"]}, "include_events"),
    ({"exclude_events": ["e"] * 1001}, "exclude_events"),
    ({"drop_properties": ["properties..email"]}, "drop_properties"),
    ({"drop_properties": [".email"]}, "drop_properties"),
    ({"drop_properties": [7]}, "drop_properties.0"),
])
def test_bad_filters_are_a_422_naming_the_field(api: httpx.Client, azurite: Azurite,
                                               fresh_container: ContainerClient, changes: dict[str, Any],
                                               field: str) -> None:
    token = container_sas(fresh_container.container_name, delete=True)
    body = sas_destination(azurite.account_url, fresh_container.container_name, token, **changes)
    response = api.put("/api/destinations/acme", json=body)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert api.get("/api/destinations/acme").status_code == 404
