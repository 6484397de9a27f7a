"""Layouts end to end against Azurite: each layout and a template with {event} land where they say, with the
file names the product controls; a template that could escape its prefix or lose its partition is a 422 through the
real server, naming path_template, and nothing is saved."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import data_files, jsonl_records, make_destination, manifests, post_batch
from tests.support.azurite import Azurite
from tests.support.sas import container_sas, sas_destination


def events_of(names: list[str]) -> list[dict[str, Any]]:
    """Mixpanel-shaped events at 09:xx and 10:xx on 2026-11-20, one per name and hour."""
    return [{"event": name, "properties": {"time": 1795165200 + hour * 3600 + i, "distinct_id": f"u{i}"}}
            for hour in (0, 1) for i, name in enumerate(names)]


@pytest.mark.parametrize(("layout", "folders"), [
    ({}, ["events/date=2026-11-20/hour=09/", "events/date=2026-11-20/hour=10/"]),
    ({"layout": "dated"}, ["events/2026/11/20/09/", "events/2026/11/20/10/"]),
    ({"layout": "dated", "partition": "day"}, ["events/2026/11/20/"]),
    ({"path_template": "raw/{type}/{year}/{month}/{day}/{hour}"}, ["raw/events/2026/11/20/09/",
                                                                   "raw/events/2026/11/20/10/"]),
])
def test_each_layout_lands_where_it_says(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient,
                                         services: Services, layout: dict[str, Any], folders: list[str]) -> None:
    dest = make_destination(api, azurite, fresh_container, prefix="acme", **layout)
    records = events_of(["Signed Up", "Charged"])
    batch_id = post_batch(api, dest, records)["batch_id"]
    assert run_export_pass(services).landed == 1
    assert data_files(fresh_container) == [f"acme/{folder}{batch_id}-0000.jsonl.gz" for folder in folders]
    assert sorted(jsonl_records(fresh_container), key=orjson.dumps) == sorted(records, key=orjson.dumps)
    assert [m["batch_id"] for m in manifests(fresh_container)] == [batch_id]  # under acme/events/_manifests/


def test_a_template_with_event_splits_files_by_event_name_in_folders_safe_for_readers(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="parquet",
                            path_template="{type}/event={event}/date={date}/hour={hour}/")
    view = api.get(f"/api/destinations/{dest}").json()
    assert (view["layout"], view["path_template"]) == ("template", "{type}/event={event}/date={date}/hour={hour}/")
    names = ["Product Viewed", "a/b?c#d%", "Zürich 🎧", "$pageview", "../../escape"]
    batch_id = post_batch(api, dest, events_of(names))["batch_id"]
    profiles_id = post_batch(api, dest, list(sample_data.profiles(4)), record_type="profiles")["batch_id"]
    assert run_export_pass(services).landed == 2

    folders = {"Product Viewed": "Product Viewed", "a/b?c#d%": "a_b_c_d_", "Zürich 🎧": "Zürich 🎧",
               "$pageview": "$pageview", "../../escape": ".._.._escape"}
    files = data_files(fresh_container)
    profile_files = [name for name in files if name.startswith("profiles/")]
    assert len(profile_files) == 1 and profile_files[0].endswith(f"/{profiles_id}-0000.parquet")
    assert profile_files[0].count("/") == 2  # profiles/date=YYYY-MM-DD/<file>: no hour, no event folder
    expected = sorted(f"events/event={folders[name]}/date=2026-11-20/hour={hour}/{batch_id}-0000.parquet"
                      for name in names for hour in ("09", "10"))
    assert sorted(name for name in files if name.startswith("events/")) == expected
    [manifest] = [m for m in manifests(fresh_container) if m.get("batch_id") == batch_id]
    assert sorted(f["name"] for f in manifest["files"]) == expected
    assert all(f["records"] == 1 for f in manifest["files"])


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"path_template": "{type}/../{date}/{hour}/"}, "path_template", "'..'"),
    ({"path_template": "../../other/{type}/{date}/{hour}"}, "path_template", "'..'"),
    ({"path_template": "{type}//{date}/{hour}/"}, "path_template", "empty folder"),
    ({"path_template": "{type}/{date}/{minute}/"}, "path_template", "unknown placeholder {minute}"),
    ({"path_template": "{type}/{date}/"}, "path_template", "{hour}"),
    ({"path_template": "{type}/{date}/{hour}/", "partition": "day"}, "path_template", "cannot use {hour}"),
    ({"path_template": "{type}/{event}/{hour}/"}, "path_template", "must name the date"),
    ({"layout": "dated", "path_template": "{type}/{date}/{hour}/"}, "path_template", "layout 'template'"),
    ({"layout": "template"}, "path_template", "give the folders' template"),
    ({"layout": "mixpanel"}, "layout", "'hive', 'dated' or 'template'"),
])
def test_a_bad_layout_is_a_422_naming_the_field_and_nothing_is_saved(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, changes: dict[str, Any], field: str,
    words: str,
) -> None:
    token = container_sas(fresh_container.container_name, delete=True)
    body = sas_destination(azurite.account_url, fresh_container.container_name, token, **changes)
    response = api.put("/api/destinations/acme", json=body)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == [field] and words in details[0]["message"], details
    assert api.get("/api/destinations/acme").status_code == 404
    assert data_files(fresh_container) == []
