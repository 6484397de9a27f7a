"""Parquet end to end against Azurite: the five platforms' shapes in one batch land typed and exact, readable by
pyarrow, DuckDB (the whole destination, with hive partitioning) and pandas; column types stay fixed across a
destination's files, also when two exports add to its schema at once; a batch retried after a format switch lists
only the files of its new format."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from scripts import sample_data
from shared.control.destination_schemas import DestinationSchemas, schema_blob
from shared.export.runner import Hooks, run_export_pass
from shared.formats.exact_json import parse_exact
from shared.formats.parquet_schema import SchemaRequest
from shared.formats.record_fields import event_microseconds, find_event_name, find_insert_id, find_profile_identity
from shared.services import Services, build_services
from tests.shared.export_helpers import blob_names, data_files, make_destination, manifests, post_batch
from tests.shared.parquet_helpers import differences, download_tree, expected_row, rows_read, table_of
from tests.support.azurite import Azurite

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Crash(BaseException):
    """Stands in for the worker dying mid-export."""


def five_platforms(count: int) -> list[bytes]:
    """CleverTap, Mixpanel, Segment, Amplitude and PostHog events as each platform sends them (NDJSON lines, some
    numbers written so that only their text keeps them), over three hours of 2026-11-20; `n` numbers them."""
    lines = []
    for n in range(count):
        minute = n % 180
        hour, minute = 9 + minute // 60, minute % 60
        iso = f"2026-11-20T{hour:02d}:{minute:02d}:{n % 60:02d}.{n % 1000:03d}Z"
        epoch = int(datetime(2026, 11, 20, hour, minute, n % 60, tzinfo=UTC).timestamp())
        shape = n % 5
        if shape == 0:
            lines.append(f'{{"n":{n},"identity":"ct-{n}","ts":{epoch},"type":"event","evtName":"Charged",'
                         f'"evtData":{{"Amount":12.5,"Currency":"EUR","Items":[{{"sku":"s-{n}","qty":2}}],'
                         f'"Paid On":"$D_{epoch}","Coupon":{{}}}},"profile":{{"objectId":"__{n:x}"}}}}')
        elif shape == 1:
            lines.append(f'{{"event":"Product Viewed","properties":{{"n":{n},"time":{epoch * 1000 + n % 1000},'
                         f'"distinct_id":"mp-{n}","$insert_id":"ins-{n}","$city":"Zürich","price":129.99,'
                         f'"big":123456789012345678901234567890,"ratio":0.10000000000000000001,"flag":true}}}}')
        elif shape == 2:
            lines.append(f'{{"n":{n},"type":"track","event":"Order Completed","userId":"seg-{n}","anonymousId":null,'
                         f'"messageId":"msg-{n}","timestamp":"{iso}","properties":{{"revenue":99,"currency":"USD",'
                         f'"products":[{{"id":"p1","price":1.50}}]}},"context":{{"library":{{"name":"analytics.js"}}}}}}')
        elif shape == 3:
            amount = f'"{n}.5"' if n % 20 == 18 else str(n)  # a string where the field was first a number
            lines.append(f'{{"n":{n},"event_type":"Button Clicked","user_id":"amp-{n}","device_id":"d-{n}",'
                         f'"time":{epoch * 1000},"insert_id":"amp-ins-{n}","event_properties":{{"amount":{amount},'
                         f'"Amount":"{n}"}},"user_properties":{{"plan":"pro"}}}}')
        else:
            lines.append(f'{{"n":{n},"event":"$pageview","distinct_id":"ph-{n}","uuid":"0190-{n:04d}",'
                         f'"timestamp":"2026-11-20 {hour:02d}:{minute:02d}:00","properties":{{"$current_url":'
                         f'"https://example.com/ü?q=1","$set":{{"email":"u{n}@example.com"}},"$lib":"web"}}}}')
    return [line.encode() for line in lines]


def post_lines(api: httpx.Client, dest: str, lines: list[bytes], record_type: str = "events") -> str:
    response = api.post(f"/api/destinations/{dest}/batches", params={"type": record_type},
                        content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    return str(response.json()["batch_id"])


def schema_types(services: Services, dest: str, record_type: str) -> dict[str, str]:
    record = services.destinations.get_record(dest)
    found = services.control.get(schema_blob(dest, record.generation))
    assert found is not None
    fields = found.data["record_types"][record_type]["fields"]
    return {key: spec["type"] for key, spec in fields.items()}


def number_of(record: dict[str, Any]) -> int:
    return int(record.get("n", (record.get("properties") or {}).get("n", -1)))


def test_the_five_platform_shapes_land_typed_exact_and_readable_by_duckdb_with_hive_partitioning(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, tmp_path: Path,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet")
    view = api.get(f"/api/destinations/{dest}").json()
    assert (view["compression"], view["parquet_columns"]) == ("zstd", "typed")  # the defaults for parquet
    lines = five_platforms(200)
    batch_id = post_lines(api, dest, lines)
    assert run_export_pass(services).landed == 1

    names = data_files(fresh_container)
    assert names == [f"events/date=2026-11-20/hour={h}/{batch_id}-0000.parquet" for h in ("09", "10", "11")]
    types = schema_types(services, dest, "events")
    posted = {number_of(parse_exact(line)): parse_exact(line) for line in lines}
    seen = 0
    for name in names:
        properties = fresh_container.get_blob_client(name).get_blob_properties()
        assert properties.content_settings.content_type == "application/vnd.apache.parquet"
        table = table_of(fresh_container.download_blob(name).readall())
        schema = table.schema
        assert schema.names[:4] == ["_event_name", "_event_time", "_identity", "_insert_id"]
        assert [schema.field(i).type for i in range(4)] == [pa.string(), pa.timestamp("us", tz="UTC"), pa.string(),
                                                            pa.string()]
        for row in rows_read(table):
            record = posted[int(row.fields["n"] if "n" in row.fields else row.fields["properties.n"])]
            assert row.core["_event_name"] == find_event_name(record)
            assert (row.core["_event_time"] - EPOCH) // timedelta(microseconds=1) == event_microseconds(record)
            assert row.core.get("_identity") == find_profile_identity(record)
            assert row.core.get("_insert_id") == find_insert_id(record)
            problems = differences(row, expected_row(record, types))
            assert not problems, (record, problems)
            seen += 1
    assert seen == len(lines)
    assert types["properties.big"] == "int64" and types["properties.ratio"] == "float64"
    assert types["event_properties.amount"] == "string" and types["evtData.Items"] == "json"  # ints and strings

    download_tree(fresh_container, tmp_path)
    found = duckdb.sql(f"""SELECT count(*) AS n, count(DISTINCT hour) AS hours, min(date)::VARCHAR AS day,
                           count(DISTINCT _insert_id) AS insert_ids
                           FROM read_parquet('{tmp_path}/**/*.parquet', hive_partitioning = true)""").fetchall()
    assert found == [(len(lines), 3, "2026-11-20", 160)]
    frame = pd.read_parquet(tmp_path / "events")  # pandas (pyarrow) reads the partitions as columns too
    assert (len(frame) == len(lines) and sorted(frame["hour"].astype(str).unique()) == ["10", "11", "9"]) or \
        sorted(frame["hour"].astype(str).unique()) == ["09", "10", "11"]
    [manifest] = manifests(fresh_container)
    assert manifest["format"] == "parquet" and manifest["parquet_columns"] == "typed"
    assert manifest["records_received"] == manifest["records_written"] == len(lines)
    assert [(f["name"], f["records"]) for f in manifest["files"]] == [
        (name, table_of(fresh_container.download_blob(name).readall()).num_rows) for name in names]


def test_json_columns_hold_each_record_exactly_as_posted_beside_the_core_columns(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet", parquet_columns="json",
                            compression="snappy")
    lines = five_platforms(50)
    post_lines(api, dest, lines)
    post_batch(api, dest, list(sample_data.profiles(10)), record_type="profiles")
    assert run_export_pass(services).landed == 2
    landed = []
    for name in data_files(fresh_container):
        table = table_of(fresh_container.download_blob(name).readall())
        expected = ["_event_name", "_event_time", "_identity", "_insert_id", "properties"] \
            if name.startswith("events/") else ["_identity", "_exported_at", "properties"]
        assert table.column_names == expected
        landed += table.column("properties").to_pylist()
    assert sorted(text.encode() for text in landed[:50]) == sorted(lines)
    assert services.control.get(schema_blob(dest, services.destinations.get_record(dest).generation)) is None


def test_types_stay_fixed_across_files_so_readers_that_merge_schemas_read_them_all(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services, tmp_path: Path,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet")
    first = [b'{"event":"e","ts":1795165200,"v":1,"Tag":"x"}', b'{"event":"e","ts":1795165201,"v":2}']
    second = [b'{"event":"e","ts":1795168800,"v":"three","tag":"y"}', b'{"event":"e","ts":1795168801,"v":4.5}',
              b'{"event":"e","ts":1795168802,"v":[5]}']
    post_lines(api, dest, first)
    assert run_export_pass(services).landed == 1
    post_lines(api, dest, second)
    assert run_export_pass(services).landed == 1

    files = download_tree(fresh_container, tmp_path, "events/")
    tables = [table_of(path.read_bytes()) for path in files if path.suffix == ".parquet"]
    assert len(tables) == 2
    # Fixed by the first file; the second's values all miss it, so only its companion is in that file.
    assert [table.schema.field("v").type if "v" in table.schema.names else None for table in tables] == [
        pa.int64(), None]
    assert pa.unify_schemas([table.schema for table in tables])  # no conflict
    merged = pds.dataset([str(p) for p in files if p.suffix == ".parquet"], format="parquet",
                         schema=pa.unify_schemas([t.schema for t in tables])).to_table()
    assert sorted(merged.column("v").to_pylist(), key=str) == [1, 2, None, None, None]
    assert sorted(filter(None, merged.column("v__json").to_pylist())) == ['"three"', "4.5", "[5]"]
    assert sorted(c for c in merged.column_names if c.lower().startswith("tag")) == ["Tag", "tag__2"]
    rows = duckdb.sql(f"""SELECT v, v__json, "Tag", tag__2 FROM read_parquet('{tmp_path}/events/**/*.parquet',
                          hive_partitioning = true, union_by_name = true) ORDER BY _event_time""").fetchall()
    assert rows == [(1, None, "x", None), (2, None, None, None), (None, '"three"', None, "y"),
                    (None, "4.5", None, None), (None, "[5]", None, None)]

    generation = services.destinations.get_record(dest).generation
    assert services.control.get(schema_blob(dest, generation)) is not None
    assert api.delete(f"/api/destinations/{dest}").status_code == 204
    assert services.control.get(schema_blob(dest, generation)) is None  # deleted with its destination


def test_two_exports_adding_to_one_schema_at_once_lose_no_column_type(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet")
    generation = services.destinations.get_record(dest).generation
    barrier = threading.Barrier(8)
    answers: list[dict[str, str]] = []

    def export(worker: int) -> None:
        schemas = DestinationSchemas(services.control, dest, generation)  # each export reads the document itself
        barrier.wait()
        for step in range(5):
            wanted = {f"shared.{step}": ("int64", "string")[worker % 2], f"own.{worker}.{step}": "bool"}
            schema = schemas.settle("events" if worker < 6 else "profiles", SchemaRequest(new_fields=wanted))
            answers.append({key: schema.fields[key].type for key in wanted})

    threads = [threading.Thread(target=export, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events, profiles = schema_types(services, dest, "events"), schema_types(services, dest, "profiles")
    assert set(events) == {f"shared.{s}" for s in range(5)} | {f"own.{w}.{s}" for w in range(6) for s in range(5)}
    assert set(profiles) == {f"shared.{s}" for s in range(5)} | {f"own.{w}.{s}" for w in (6, 7) for s in range(5)}
    for answer in answers:  # every export was told the type that stands, whoever fixed it
        for key, kind in answer.items():
            assert kind == (events if key in events and kind == events.get(key) else profiles)[key]

    # The same through the export pass: an events batch and a profiles batch exported at once, each adding fields.
    post_lines(api, dest, [b'{"event":"e","ts":1795165200,"only_events":1}'])
    post_batch(api, dest, [{"identity": "u", "only_profiles": True}], record_type="profiles")
    assert run_export_pass(build_services(services.settings.model_copy(update={"export_concurrency": 2}),
                                          secrets=services.secrets)).landed == 2
    assert schema_types(services, dest, "events")["only_events"] == "int64"
    assert schema_types(services, dest, "profiles")["only_profiles"] == "bool"


@pytest.mark.parametrize("delete", [True, False])
def test_a_batch_retried_after_a_format_switch_lists_only_its_new_files(
    api: httpx.Client, azurite: Azurite, blob_service: BlobServiceClient, fresh_container: ContainerClient,
    services: Services, delete: bool,
) -> None:
    dest = make_destination(api, azurite, fresh_container, compression="gzip", delete=delete)
    batch_id = post_batch(api, dest, list(sample_data.events(90, hours=3)))["batch_id"]
    commits: list[str] = []

    def die_on_second(name: str) -> None:
        commits.append(name)
        if len(commits) == 2:
            raise Crash()

    with pytest.raises(Crash):
        run_export_pass(services, hooks=Hooks(before_commit=die_on_second))
    old = data_files(fresh_container)  # files committed before the worker died (partitions are written at once)
    assert old and all(name.endswith(".jsonl.gz") for name in old) and manifests(fresh_container) == []
    make_destination(api, azurite, fresh_container, format="parquet", delete=delete)  # the switch (a PUT)
    status = api.post(f"/api/batches/{batch_id}/retry")
    assert status.status_code in (200, 409)
    later = build_services(services.settings.model_copy(update={"lease_seconds": 15}), secrets=services.secrets)
    for _ in range(40):  # the dead worker's lease runs out, then a pass takes the batch over
        if run_export_pass(later).landed == 1:
            break
        threading.Event().wait(0.5)
    [manifest] = manifests(fresh_container)
    assert all(f["name"].endswith(".parquet") for f in manifest["files"]) and len(manifest["files"]) == 3
    assert manifest["records_written"] == 90
    leftovers = [name for name in blob_names(fresh_container) if name.endswith(".jsonl.gz")]
    state = api.get(f"/api/batches/{batch_id}").json()
    if delete:
        assert leftovers == [] and state["notes"] == []
    else:  # kept, named in the batch's notes, and in no manifest
        assert leftovers == old and all(name in state["notes"][0] for name in old)


def test_a_coalesced_run_writes_one_parquet_file_per_partition_with_every_batchs_records(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet",
                            coalesce={"max_delay_seconds": 0, "target_file_mb": 128})
    batches = [post_lines(api, dest, five_platforms(200)[i::4]) for i in range(4)]
    post_batch(api, dest, list(sample_data.profiles(6)), record_type="profiles")
    assert run_export_pass(services).landed == 5
    files = data_files(fresh_container)
    events = [name for name in files if name.startswith("events/")]
    assert len(events) == 3 and all(name.endswith(".parquet") for name in events)  # three hours, one run
    [manifest] = [m for m in manifests(fresh_container) if m["type"] == "events"]
    assert sorted(b["batch_id"] for b in manifest["batches"]) == sorted(batches)
    assert manifest["records_written"] == sum(table_of(fresh_container.download_blob(n).readall()).num_rows
                                              for n in events) == 200
