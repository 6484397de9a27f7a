"""Intake's limits through the real HTTP API (issue 11, items 1 and 12): each refusal is a clear JSON error and
stages nothing; within the limits the same batch is accepted.

- MAX_CONCURRENT_INTAKE: a request beyond it is answered 503 `intake_busy` with Retry-After, at once;
- MAX_RECORD_CONTAINERS: a record of more objects and arrays is refused before it is parsed;
- MAX_CSV_COLUMNS: a CSV destination refuses a batch whose partition would have more columns (a JSONL one
  takes it);
- a destination body past 1 MiB is refused with 413.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import ContainerClient

from shared.intake.records import RecordsRejected, parse_batch
from shared.services import Services, build_services
from shared.settings import Settings
from tests.reliability.hostile_support import staged_or_state_blobs
from tests.shared.export_helpers import make_destination
from tests.support.azurite import Azurite

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
EVENT = {"event": "e", "ts": 1700000000}


@pytest.fixture
def services(settings: Settings) -> Services:
    limited = settings.model_copy(update={"max_concurrent_intake": 1, "max_record_containers": 1000,
                                          "max_csv_columns": 50})
    return build_services(limited)


def post(api: httpx.Client, dest: str, content: Any, headers: dict[str, str]) -> httpx.Response:
    return api.post(f"/api/destinations/{dest}/batches", params={"type": "events"}, content=content,
                    headers=headers)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return dict(error)


def test_an_intake_request_beyond_max_concurrent_intake_is_answered_503_with_retry_after(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    dest = make_destination(api, azurite, fresh_container, dest_id="busy", compression="none")
    url = httpx.URL(str(api.base_url))
    line = orjson.dumps(EVENT) + b"\n"
    with socket.create_connection((url.host, url.port), timeout=30) as first:
        # The first request sends its headers and half its body, and holds the only place.
        first.sendall(f"POST /api/destinations/{dest}/batches?type=events HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Type: application/x-ndjson\r\nContent-Length: {2 * len(line)}\r\n\r\n".encode()
                      + line)
        time.sleep(1)  # for its headers to reach the handler (a request of ours sent meanwhile would hold the place)
        deadline = time.monotonic() + 10
        while True:  # until the first request is in the handler
            second = post(api, dest, line, NDJSON)
            if second.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        first.sendall(line)
        answer = first.recv(65536)

    error = error_of(second, 503)
    assert error["code"] == "intake_busy" and "MAX_CONCURRENT_INTAKE" in error["message"]
    assert second.headers["retry-after"] == "5"
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert post(api, dest, line, NDJSON).status_code == 202  # the place was given back


def wide_record(containers: int) -> bytes:
    """An event holding `containers` objects and arrays in all (itself included): `"p": [[], [], ...]`."""
    return b'{"event":"e","ts":1700000000,"p":[' + b",".join([b"[]"] * (containers - 2)) + b"]}"


@pytest.mark.parametrize("kind", ["ndjson", "json"])
def test_a_record_holding_more_objects_and_arrays_than_the_limit_is_refused_and_stages_nothing(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient, kind: str,
) -> None:
    dest = make_destination(api, azurite, fresh_container, dest_id="wide", compression="none")
    good = orjson.dumps(EVENT)
    records = [good, wide_record(1001), good]
    body = b"\n".join(records) if kind == "ndjson" else b"[" + b",".join(records) + b"]"

    error = error_of(post(api, dest, body, NDJSON if kind == "ndjson" else JSON), 400)

    unit = "line" if kind == "ndjson" else "record"
    assert error["message"] == (f"{unit} 2: the record holds more than 1000 objects and arrays, the limit per "
                                "record (MAX_RECORD_CONTAINERS)")
    assert error["details"][0]["line"] == 2
    assert staged_or_state_blobs(services) == []
    at_limit = b"\n".join([good, wide_record(1000)]) if kind == "ndjson" else b"[" + good + b"," + \
        wide_record(1000) + b"]"
    assert post(api, dest, at_limit, NDJSON if kind == "ndjson" else JSON).status_code == 202


def test_brackets_inside_strings_are_not_containers() -> None:
    text = orjson.dumps({**EVENT, "s": "[]{}" * 5000})
    batch = parse_batch(text, "ndjson", "events", max_containers=16)
    assert batch.record_count == 1
    with pytest.raises(RecordsRejected, match="more than 16 objects and arrays"):
        parse_batch(wide_record(17), "ndjson", "events", max_containers=16)


def columns_body(keys: int) -> bytes:
    """Records that together have `keys` distinct properties, ten each: `keys` + 2 CSV columns."""
    lines = []
    for first in range(0, keys, 10):
        properties = {f"k{n}": n for n in range(first, min(first + 10, keys))}
        lines.append(orjson.dumps({**EVENT, "properties": properties}))
    return b"\n".join(lines)


def test_a_csv_destination_refuses_a_batch_wider_than_max_csv_columns_and_jsonl_takes_it(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    csv = make_destination(api, azurite, fresh_container, dest_id="csv", format="csv", compression="none")
    jsonl = make_destination(api, azurite, fresh_container, dest_id="jsonl", compression="none")
    too_wide = columns_body(49)  # 51 columns: event, ts and 49 properties

    error = error_of(post(api, csv, too_wide, NDJSON), 400)

    assert "more than 50 distinct CSV columns" in error["message"]
    assert "MAX_CSV_COLUMNS" in error["message"] and "jsonl" in error["message"]
    assert staged_or_state_blobs(services) == []
    assert post(api, csv, columns_body(48), NDJSON).status_code == 202  # 50 columns
    assert post(api, jsonl, too_wide, NDJSON).status_code == 202


def test_a_destination_body_over_1_mib_is_refused_with_413(
    api: httpx.Client, services: Services, azurite: Azurite, fresh_container: ContainerClient,
) -> None:
    body = b'{"container":"' + b"a" * (1024 * 1024) + b'"}'

    error = error_of(api.put("/api/destinations/big", content=body, headers=JSON), 413)

    assert error["code"] == "payload_too_large"
    assert "1048576 bytes" in error["message"]
    assert api.get("/api/destinations/big").status_code == 404
