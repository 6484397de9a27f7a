"""`make demo`: the real product end to end on Azurite, through its HTTP API and the timer's export pass.

1. creates a destination container and a read+write container SAS for it (what a CleverTap customer hands
   over), and registers the destination with `PUT /api/destinations/demo`;
2. posts a batch of events (CleverTap- and Mixpanel-style, gzip NDJSON) and one of profiles (a JSON array);
3. runs the export pass, the code the timer trigger runs, and shows its progress;
4. prints what landed: the blob tree with per-file record counts, a manifest, the batch states and the first
   lines of one file; then checks, by counting, that every accepted record landed exactly once.

Then it posts the run's events to a destination of each other format too (CSV with zstd in dated folders, Parquet
with typed columns) and reads the Parquet destination back whole with DuckDB and pandas (`scripts.demo_formats`).

Every run adds new batches (the run number picks the sample data's seed and time window, so each run is
deterministic); nothing is ever duplicated. Exits 1 if anything did not land.

It runs against this checkout's Azurite on AZURITE_PORT (default 10000) and says so in its first line; a
server on that port that this checkout did not start is refused (scripts.local_azurite), and nothing is
sent to any other port. The control container and the local secret store are the ones `make serve` uses
(CONTROL_CONTAINER, LOCAL_SECRETS_PATH from the environment or local.settings.json).
"""

from __future__ import annotations

import gzip
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from scripts import demo_formats, local_azurite, sample_data
from scripts.local_server import ApiServer
from scripts.local_settings import merged_values
from shared.api.app import create_api
from shared.destinations.connection_strings import parse_connection_string
from shared.export.runner import run_export_pass
from shared.services import Services, build_services
from shared.settings import load_settings

Out = Callable[[str], None]

EVENTS_START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
EVENT_HOURS = 3
FIRST_LINES = 3


@dataclass(frozen=True)
class LandedFile:
    name: str
    records: int  # lines counted in the blob itself, not taken from the manifest
    bytes: int
    batch_id: str | None  # the batch whose manifest lists it (None: no manifest does)
    new: bool  # written by this run's batches


@dataclass
class DemoResult:
    run: int
    destination_id: str
    container: str
    batches: list[dict[str, Any]]  # this run's batches, as GET /api/batches/{id} shows them
    files: list[LandedFile]  # every data file in the container, all runs
    manifests: dict[str, dict[str, Any]]  # manifest blob name -> manifest
    accepted_records: int  # records of all the destination's landed batches, as the API accepted them
    counted_records: int  # records counted in the container's data files
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def run_demo(
    connection_string: str,
    account_url: str,
    *,
    out: Out = print,
    control_container: str = "export-control",
    secrets_path: Path = Path(".local/dev-secrets.json"),
    destination_id: str = "demo",
    container: str = "demo-exports",
    events: int = 3000,
    profiles: int = 1000,
    settle_seconds: float = 30,
) -> DemoResult:
    """Run the demo against the storage account behind `connection_string` (Azurite) and report."""
    started = time.monotonic()
    settings = load_settings(
        control_storage_connection=connection_string, control_container=control_container,
        local_secrets_path=secrets_path, allow_http_loopback=True, key_vault_url="",
    )
    services = build_services(settings)
    destination = BlobServiceClient.from_connection_string(connection_string, retry_total=2).get_container_client(
        container
    )
    with ApiServer(create_api(lambda: services)) as server, httpx.Client(base_url=server.base_url, timeout=60) as api:
        out(f"The export API is serving on {server.base_url}/api/ (uvicorn; control container '{control_container}')")
        out("")
        out("1/4  Destination: a container and a read+write SAS for it, registered with auth type 'sas'")
        register_destination(api, destination, connection_string, account_url, destination_id, out)
        out("")
        run = count_batches(api, destination_id) // 2
        out(f"2/4  Intake: run {run + 1} posts a batch of events and one of profiles")
        batch_ids = post_batches(api, destination_id, run, events, profiles, out)
        out("")
        out("3/4  Export pass (the timer trigger's code: shared.export.runner.run_export_pass)")
        states = export(services, api, batch_ids, out, settle_seconds)
        out("")
        out(f"4/4  What landed in container '{container}'")
        result = report(api, destination, destination_id, run, states, out)
        if result.ok:
            out("")
            out("Also one destination of each format: the same events as CSV (zstd, dated folders) and as Parquet "
                "(typed columns, zstd), read back with DuckDB and pandas")
            result.problems += demo_formats.run_formats(
                api, BlobServiceClient.from_connection_string(connection_string, retry_total=2),
                lambda name: container_sas(connection_string, name, datetime.now(UTC)), account_url,
                destination_id, container, run, events_body(run, events),
                lambda ids: export_quietly(services, api, ids, settle_seconds), out)
    result.seconds = round(time.monotonic() - started, 2)
    out("")
    if result.ok:
        out(f"OK: run {run + 1} landed {sum(b['records'] for b in states):,} new records; the container holds "
            f"{result.counted_records:,} records in {len(result.files)} files, exactly the "
            f"{result.accepted_records:,} accepted, none duplicated ({result.seconds:.1f} s)")
    else:
        for problem in result.problems:
            out(f"PROBLEM: {problem}")
    return result


# --- 1. destination -------------------------------------------------------------------------------------------


def container_sas(connection_string: str, container: str, now: datetime) -> str:
    """A container SAS with read and write for 24 hours: what a customer generates for CleverTap."""
    pairs = parse_connection_string(connection_string)
    return generate_container_sas(
        pairs["accountname"], container, account_key=pairs["accountkey"],
        permission=ContainerSasPermissions(read=True, write=True), expiry=now + timedelta(hours=24),
        protocol="https,http",  # Azurite speaks http; a real customer's token says https
    )


def register_destination(api: httpx.Client, destination: ContainerClient, connection_string: str,
                         account_url: str, destination_id: str, out: Out) -> None:
    try:
        destination.create_container()
        out(f"  created container '{destination.container_name}' at {account_url}")
    except ResourceExistsError:
        out(f"  container '{destination.container_name}' already exists at {account_url}")
    token = container_sas(connection_string, destination.container_name, datetime.now(UTC))
    body = {"endpoint": account_url, "container": destination.container_name, "format": "jsonl",
            "compression": "gzip", "auth": {"type": "sas", "sas_token": token}}
    response = api.put(f"/api/destinations/{destination_id}", json=body)
    expect(response, 200, 201)
    view = response.json()
    sas = view["auth"]["sas"]
    out(f"  PUT /api/destinations/{destination_id} -> {response.status_code}: SAS grants "
        f"{', '.join(sas['permission_names'])}, expires {sas['expiry']}; stored as secret "
        f"'{view['auth']['secret_name']}' (the token itself is never shown again)")
    for warning in view["warnings"]:
        out(f"  warning from the API: {warning}")
    out("  (the demo generates a fresh 24 h token on every run; a customer renews theirs before it expires)")


# --- 2. intake ------------------------------------------------------------------------------------------------


def count_batches(api: httpx.Client, destination_id: str) -> int:
    count, token = 0, None
    while True:
        params: dict[str, Any] = {"destination_id": destination_id, "limit": 1000}
        if token:
            params["next"] = token
        response = api.get("/api/batches", params=params)
        expect(response, 200)
        page = response.json()
        count += len(page["batches"])
        token = page["next"]
        if not token:
            return count


def events_body(run: int, events: int) -> bytes:
    """The run's events as gzip NDJSON: CleverTap and Mixpanel shapes over three hours (the same bytes every time)."""
    start = EVENTS_START + timedelta(hours=EVENT_HOURS * run)
    records = sample_data.events(events, seed=1000 + run, start=start, hours=EVENT_HOURS,
                                 shapes=("clevertap", "mixpanel"))
    return gzip.compress(sample_data.ndjson(list(records)), mtime=0)


def post_batches(api: httpx.Client, destination_id: str, run: int, events: int, profiles: int,
                 out: Out) -> list[str]:
    """Post this run's two batches. Idempotency keys name the run, so a re-run after a crash re-finds them."""
    start = EVENTS_START + timedelta(hours=EVENT_HOURS * run)
    body = events_body(run, events)
    response = api.post(
        f"/api/destinations/{destination_id}/batches", params={"type": "events"}, content=body,
        headers={"content-type": "application/x-ndjson", "content-encoding": "gzip",
                 "idempotency-key": f"demo-run-{run}-events"},
    )
    expect(response, 202)
    events_batch = response.json()
    out(f"  POST .../batches?type=events   {len(body):>8,} bytes gzip NDJSON, CleverTap + Mixpanel shapes, "
        f"{start:%Y-%m-%d %H:00}-{start + timedelta(hours=EVENT_HOURS):%H:00} UTC -> {response.status_code} "
        f"{events_batch['batch_id']} ({events_batch['records']:,} records, {events_batch['state']})")
    profile_records = list(sample_data.profiles(profiles, seed=2000 + run))
    response = api.post(
        f"/api/destinations/{destination_id}/batches", params={"type": "profiles"},
        content=orjson.dumps(profile_records),
        headers={"content-type": "application/json", "idempotency-key": f"demo-run-{run}-profiles"},
    )
    expect(response, 202)
    profiles_batch = response.json()
    out(f"  POST .../batches?type=profiles {len(response.request.content):>8,} bytes JSON array, CleverTap + "
        f"Mixpanel profiles -> {response.status_code} {profiles_batch['batch_id']} "
        f"({profiles_batch['records']:,} records, {profiles_batch['state']})")
    return [events_batch["batch_id"], profiles_batch["batch_id"]]


# --- 3. export pass -------------------------------------------------------------------------------------------


class ProgressHandler(logging.Handler):
    """Turns the export pass's structured log lines into progress lines."""

    def __init__(self, out: Out):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        ctx = {k[4:]: v for k, v in vars(record).items() if k.startswith("ctx_")}
        if event == "export pass started":
            self.out(f"  pass started: {ctx.get('due')} batch(es) due")
        elif event == "batch export started":
            self.out(f"  -> {ctx['batch_id']}: exporting (attempt {ctx['attempt']})")
        elif event == "batch landed":
            self.out(f"  ok {ctx['batch_id']}: landed {ctx['records']:,} records in {ctx['files']} file(s), "
                     f"{ctx['bytes']:,} bytes, {ctx['duration_seconds']} s")
        elif event in {"batch will be retried", "batch failed"}:
            self.out(f"  !! {ctx['batch_id']}: {event}: {ctx.get('reason')}")
        elif event == "export pass finished":
            self.out(f"  pass finished: landed={ctx['landed']} failed={ctx['failed']} retried={ctx['retried']} "
                     f"skipped={ctx['skipped']} in {ctx['duration_seconds']} s")
        else:
            self.out(f"  {record.getMessage()}")


def export(services: Services, api: httpx.Client, batch_ids: list[str], out: Out,
           settle_seconds: float) -> list[dict[str, Any]]:
    """Run passes until this run's batches are landed or failed (another worker, e.g. `make serve`'s timer,
    may hold one for a moment); return their states."""
    logger = logging.getLogger("shared.export.runner")
    handler, level = ProgressHandler(out), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    deadline = time.monotonic() + settle_seconds
    try:
        while True:
            run_export_pass(services)
            states = [batch_status(api, batch_id) for batch_id in batch_ids]
            open_ = [s for s in states if s["state"] not in {"landed", "failed"}]
            # A batch waiting to retry has a reason; waiting longer would not help the demo.
            if not open_ or any(s["last_error"] for s in open_) or time.monotonic() > deadline:
                return states
            out(f"  {len(open_)} batch(es) still {', '.join(s['state'] for s in open_)} "
                "(another worker may hold them); checking again")
            time.sleep(1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def export_quietly(services: Services, api: httpx.Client, batch_ids: list[str],
                   settle_seconds: float) -> list[dict[str, Any]]:
    """`export` without its progress lines (the other formats' batches)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        run_export_pass(services)
        states = [batch_status(api, batch_id) for batch_id in batch_ids]
        if all(s["state"] in {"landed", "failed"} for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def batch_status(api: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = api.get(f"/api/batches/{batch_id}")
    expect(response, 200)
    return dict(response.json())


# --- 4. report ------------------------------------------------------------------------------------------------


def read_data(container: ContainerClient, name: str) -> bytes:
    data = container.download_blob(name).readall()
    return gzip.decompress(data) if name.endswith(".gz") else data


def count_records(name: str, data: bytes) -> int:
    lines = sum(1 for line in data.splitlines() if line.strip())
    return lines - 1 if name.endswith((".csv", ".csv.gz")) and lines else lines  # CSV: minus the header row


def landed_batches(api: httpx.Client, destination_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        params: dict[str, Any] = {"destination_id": destination_id, "state": "landed", "limit": 1000}
        if token:
            params["next"] = token
        response = api.get("/api/batches", params=params)
        expect(response, 200)
        page = response.json()
        for item in page["batches"]:
            found[item["batch_id"]] = batch_status(api, item["batch_id"])
        token = page["next"]
        if not token:
            return found


def report(api: httpx.Client, container: ContainerClient, destination_id: str, run: int,
           states: list[dict[str, Any]], out: Out) -> DemoResult:
    names = sorted((b.name, b.size) for b in container.list_blobs())
    manifests = {n: orjson.loads(container.download_blob(n).readall()) for n, _ in names if "/_manifests/" in n}
    owner = {f["name"]: m["batch_id"] for m in manifests.values() for f in m["files"]}
    ours = {s["batch_id"] for s in states}
    contents: dict[str, bytes] = {}
    files = []
    for name, size in names:
        if "/_manifests/" in name or name.endswith("_export_probe.txt"):
            continue
        contents[name] = read_data(container, name)
        batch_id = owner.get(name)
        files.append(LandedFile(name, count_records(name, contents[name]), size, batch_id, batch_id in ours))
    print_tree(container.container_name, names, files, manifests, out)
    landed = landed_batches(api, destination_id)
    result = DemoResult(run=run, destination_id=destination_id, container=container.container_name,
                        batches=states, files=files, manifests=manifests,
                        accepted_records=sum(b["records"] for b in landed.values()),
                        counted_records=sum(f.records for f in files))
    print_manifest(states, manifests, out)
    print_states(states, out)
    print_first_lines(states, files, contents, out)
    result.problems = check(result, landed)
    return result


def print_tree(container: str, names: list[tuple[str, int]], files: list[LandedFile],
               manifests: dict[str, dict[str, Any]], out: Out) -> None:
    """The blob tree, one directory per line and its blobs indented under it (a file line: records, bytes)."""
    by_name = {f.name: f for f in files}
    directories: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, size in names:
        directory, _, leaf = name.rpartition("/")
        directories[directory + "/" if directory else ""].append((leaf, size))
    out(f"  {container}/  ({len(names)} blobs)")
    for directory in sorted(directories):
        out(f"    {directory or '(top level)'}")
        for leaf, size in directories[directory]:
            name = directory + leaf
            if name in by_name:
                landed = by_name[name]
                out(f"        {leaf}  {landed.records:>7,} records  {size:>9,} bytes{'  (new)' if landed.new else ''}")
            elif name in manifests:
                m = manifests[name]
                out(f"        {leaf}  manifest: {len(m['files'])} file(s), {m['records']:,} records")
            else:
                out(f"        {leaf}  {size:,} bytes")


def print_manifest(states: list[dict[str, Any]], manifests: dict[str, dict[str, Any]], out: Out) -> None:
    for state in states:
        if state["manifest"] in manifests:
            out("")
            out(f"  Manifest {state['manifest']} (written after all of the batch's files):")
            text = orjson.dumps(manifests[state["manifest"]], option=orjson.OPT_INDENT_2).decode()
            for line in text.splitlines():
                out(f"    {line}")
            return


def print_states(states: list[dict[str, Any]], out: Out) -> None:
    out("")
    out("  Batch states (GET /api/batches/{id}):")
    for s in states:
        error = f"  last_error: {s['last_error']['message']}" if s["last_error"] else ""
        out(f"    {s['batch_id']}  {s['type']:<8}  {s['state']:<7}  {s['records']:>6,} records  "
            f"{len(s['blobs'])} file(s)  attempts={s['attempts']}{error}")


def print_first_lines(states: list[dict[str, Any]], files: list[LandedFile], contents: dict[str, bytes],
                      out: Out) -> None:
    ours = [f for f in files if f.new]
    if not ours:
        return
    first = ours[0]
    out("")
    out(f"  First lines of {first.name}{' (after gunzip)' if first.name.endswith('.gz') else ''}:")
    for line in contents[first.name].splitlines()[:FIRST_LINES]:
        text = line.decode("utf-8", errors="replace")
        out(f"    {text if len(text) <= 160 else text[:157] + '...'}")


def check(result: DemoResult, landed: dict[str, dict[str, Any]]) -> list[str]:
    """Everything accepted landed exactly once: by state, by manifest, and by counting the files' lines."""
    problems = []
    for state in result.batches:
        if state["state"] != "landed":
            reason = state["last_error"]["message"] if state["last_error"] else "not exported yet"
            problems.append(f"batch {state['batch_id']} is {state['state']}: {reason}")
    by_batch = {m["batch_id"]: (name, m) for name, m in result.manifests.items()}
    counted = {f.name: f.records for f in result.files}
    for batch_id, state in landed.items():
        if batch_id not in by_batch:
            problems.append(f"landed batch {batch_id} has no manifest in the container")
            continue
        name, manifest = by_batch[batch_id]
        if manifest["records"] != state["records"]:
            problems.append(f"manifest {name} lists {manifest['records']} records; {state['records']} were accepted")
        for entry in manifest["files"]:
            if counted.get(entry["name"]) != entry["records"]:
                problems.append(f"{entry['name']}: manifest says {entry['records']} records, the file holds "
                                f"{counted.get(entry['name'], 'nothing (missing)')}")
    for f in result.files:
        if f.batch_id is None:
            problems.append(f"{f.name} is listed by no manifest (a stale or duplicate part)")
    if result.counted_records != result.accepted_records:
        problems.append(f"the container holds {result.counted_records} records; {result.accepted_records} "
                        "were accepted in landed batches")
    return problems


def expect(response: httpx.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        raise DemoError(f"{response.request.method} {response.request.url.path} answered "
                        f"{response.status_code}: {response.text[:500]}")


class DemoError(RuntimeError):
    """An API call answered something the demo did not expect."""


def main() -> int:
    try:
        port, root = local_azurite.port_from_env(), local_azurite.azurite_root()
    except local_azurite.AzuriteError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)  # the export progress is printed by the demo itself
    console.setFormatter(logging.Formatter("  [%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(console)
    for noisy in ("azure", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    azurite = local_azurite.inspect(port, root)
    if azurite.state == "free":
        print(f"demo failed: nothing listens on 127.0.0.1:{port} (AZURITE_PORT={port}); start this checkout's "
              "Azurite with `make azurite-start` (`make demo` does)", file=sys.stderr)
        return 1
    if azurite.state == "foreign":
        print(f"demo refused: {local_azurite.foreign_message(port)}", file=sys.stderr)
        return 1
    print(f"Using {azurite.describe()}", flush=True)
    settings = merged_values()
    try:
        result = run_demo(local_azurite.connection_string(port), local_azurite.account_url(port),
                          out=partial(print, flush=True),
                          control_container=settings.get("CONTROL_CONTAINER") or "export-control",
                          secrets_path=Path(settings.get("LOCAL_SECRETS_PATH") or ".local/dev-secrets.json"))
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"Is Azurite still listening on 127.0.0.1:{port}? `make azurite-start` starts it.", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
