"""`make demo`, after its four steps: one destination of each format. The run's events also go to a CSV
destination (zstd, the Mixpanel-like dated layout) and a Parquet one (typed columns, zstd, hive layout); the
Parquet destination is then read back whole as a customer's data engineer would, with DuckDB (hive partitioning,
schemas merged by name) and with pandas, and its records are counted against what the API accepted."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient

Out = Callable[[str], None]

# The formats beside the demo's own jsonl+gzip destination: (id suffix, settings).
FORMATS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("csv", {"format": "csv", "compression": "zstd", "layout": "dated"}),
    ("parquet", {"format": "parquet", "compression": "zstd", "parquet_columns": "typed"}),
)


def run_formats(api: httpx.Client, service: BlobServiceClient, token_for: Callable[[str], str], account_url: str,
                destination_id: str, container: str, run: int, events_body: bytes,
                export: Callable[[list[str]], list[dict[str, Any]]], out: Out) -> list[str]:
    """Register the two destinations, post this run's events to each, export them, show what landed and read the
    Parquet destination back; return the problems found (none when every accepted record is there once)."""
    problems: list[str] = []
    batch_ids: dict[str, str] = {}
    containers: dict[str, ContainerClient] = {}
    for suffix, settings in FORMATS:
        target = service.get_container_client(f"{container}-{suffix}")
        with contextlib.suppress(ResourceExistsError):
            target.create_container()
        containers[suffix] = target
        body = {"endpoint": account_url, "container": target.container_name,
                "auth": {"type": "sas", "sas_token": token_for(target.container_name)}, **settings}
        response = api.put(f"/api/destinations/{destination_id}-{suffix}", json=body)
        if response.status_code not in (200, 201):
            return [f"PUT /api/destinations/{destination_id}-{suffix} answered {response.status_code}: "
                    f"{response.text[:300]}"]
        posted = api.post(f"/api/destinations/{destination_id}-{suffix}/batches", params={"type": "events"},
                          content=events_body, headers={"content-type": "application/x-ndjson",
                                                        "content-encoding": "gzip",
                                                        "idempotency-key": f"demo-run-{run}-{suffix}"})
        if posted.status_code != 202:
            return [f"posting to {destination_id}-{suffix} answered {posted.status_code}: {posted.text[:300]}"]
        batch_ids[suffix] = posted.json()["batch_id"]
        shown = ", ".join(f"{key} {value}" for key, value in settings.items())
        out(f"  {destination_id}-{suffix}: {shown}; the run's events posted again -> {batch_ids[suffix]}")
    states = export(list(batch_ids.values()))
    for state in states:
        if state["state"] != "landed":
            problems.append(f"batch {state['batch_id']} is {state['state']}")
    for suffix, target in containers.items():
        show_files(target, batch_ids[suffix], out)
    problems += read_back_parquet(api, containers["parquet"], f"{destination_id}-parquet", out)
    return problems


def show_files(container: ContainerClient, batch_id: str, out: Out) -> None:
    names = [(b.name, b.size) for b in container.list_blobs() if "/_manifests/" not in b.name
             and not b.name.endswith("_export_probe.txt")]
    mine = [(name, size) for name, size in names if batch_id in name]
    out(f"  {container.container_name}/: {len(names)} data file(s) in all; this run's:")
    for name, size in mine:
        out(f"    {name} ({size:,} bytes)")


def read_back_parquet(api: httpx.Client, container: ContainerClient, destination_id: str, out: Out) -> list[str]:
    """Read the whole Parquet destination with DuckDB and pandas (from a local copy: DuckDB reads files or
    https, and the demo's Azurite is neither), and count its records against the accepted ones."""
    import duckdb
    import pandas as pd

    accepted = accepted_records(api, destination_id)
    with tempfile.TemporaryDirectory(prefix="demo-parquet-") as work:
        root = Path(work)
        for blob in container.list_blobs(name_starts_with="events/"):
            if blob.name.endswith(".parquet"):
                path = root / blob.name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(container.download_blob(blob.name).readall())
        pattern = f"{root}/events/**/*.parquet"
        out("")
        out(f"  DuckDB over every Parquet file of {container.container_name}/events/ (hive_partitioning, "
            "union_by_name):")
        query = (f"SELECT date, hour, count(*) AS events, count(DISTINCT _event_name) AS names, "
                 f"min(_event_time) AS first FROM read_parquet('{pattern}', hive_partitioning = true, "
                 f"union_by_name = true) GROUP BY ALL ORDER BY date, hour")
        out(f"    {query.replace(str(root), '<copy>')}")
        rows = duckdb.connect().execute(query).fetchall()
        for date, hour, events, names, first in rows:
            out(f"    date={date} hour={hour}: {events:,} events, {names} event names, first at "
                f"{first.astimezone(UTC):%H:%M:%S} UTC")
        counted = sum(row[2] for row in rows)
        frame = pd.read_parquet(root / "events")
        out("")
        out(f"  pandas: pd.read_parquet('<copy>/events') -> {len(frame):,} rows x {len(frame.columns)} columns; "
            "the core columns:")
        for column in ("_event_name", "_event_time", "_identity", "_insert_id"):
            out(f"    {column:<12} {frame[column].dtype!s:<22} e.g. {frame[column].dropna().iloc[0]!s}")
        typed = [c for c in frame.columns if c.startswith(("evtData.", "properties."))][:4]
        out("    then each field in a column of its own, typed: "
            + ", ".join(f"{c} {frame[c].dtype}" for c in typed))
    if counted != accepted or len(frame) != accepted:
        return [f"{destination_id}: DuckDB counted {counted:,} and pandas {len(frame):,} records; {accepted:,} "
                "were accepted in landed batches"]
    out(f"  {destination_id}: DuckDB and pandas each read {counted:,} records, exactly the {accepted:,} accepted")
    return []


def accepted_records(api: httpx.Client, destination_id: str) -> int:
    total, token = 0, None
    while True:
        params: dict[str, Any] = {"destination_id": destination_id, "state": "landed", "limit": 1000}
        if token:
            params["next"] = token
        page = api.get("/api/batches", params=params).json()
        total += sum(api.get(f"/api/batches/{item['batch_id']}").json()["records"] for item in page["batches"])
        token = page["next"]
        if not token:
            return total

