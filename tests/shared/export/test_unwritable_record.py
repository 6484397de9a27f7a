"""Records whose keys collide when flattened to CSV: refused at intake for a CSV destination; a batch accepted
for JSONL and exported after a switch to CSV fails at once, in plain words, and can be retried."""

from __future__ import annotations

import httpx
import orjson
from azure.storage.blob import ContainerClient

from tests.shared.export_helpers import data_files, jsonl_records, make_destination, post_batch
from tests.support.azurite import Azurite

# "a.b" and {"a": {"b": ...}} both flatten to the CSV column "a.b": neither may be dropped.
COLLIDING = {"event": "Signed Up", "time": 1795167012, "a.b": 1, "a": {"b": 2}}


def test_a_csv_destination_refuses_colliding_keys_at_intake(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="csv")
    body = orjson.dumps({"event": "ok", "time": 1795167012}) + b"\n" + orjson.dumps(COLLIDING)
    response = api.post(f"/api/destinations/{dest}/batches?type=events", content=body,
                        headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 400, response.text
    problem = response.json()["error"]["details"][0]
    assert problem["line"] == 2 and problem["field"] == "a.b"
    assert "CSV column 'a.b' twice" in problem["message"]
    assert api.get("/api/batches").json()["batches"] == []


def test_a_csv_column_collision_fails_the_batch_without_retries_and_jsonl_then_lands_it(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient
) -> None:
    dest = make_destination(api, azurite, fresh_container, format="jsonl")
    batch = post_batch(api, dest, [COLLIDING])
    make_destination(api, azurite, fresh_container, format="csv")  # switched before the export ran
    summary = api.post("/api/exports/run").json()
    assert (summary["failed"], summary["retried"]) == (1, 0)
    status = api.get(batch["status_url"]).json()
    assert status["state"] == "failed"
    assert status["last_error"]["code"] == "record_not_writable"
    assert "cannot be written as CSV" in status["last_error"]["message"]
    assert "'a.b'" in status["last_error"]["message"]
    assert data_files(fresh_container) == []

    # The fix the message suggests: JSONL keeps the record as sent. New credentials re-queue the batch.
    make_destination(api, azurite, fresh_container, format="jsonl")
    assert api.post("/api/exports/run").json()["landed"] == 1
    assert jsonl_records(fresh_container) == [COLLIDING]
