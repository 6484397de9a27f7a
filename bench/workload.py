"""The benchmark's data and its staging: deterministic events, posted through the product's HTTP intake.

Each export variant gets its own control container (the export pass exports every due batch it
finds there) holding one destination in a fresh destination container, with a read+write+delete
container SAS, as a customer would set it up.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from scripts import sample_data
from shared.api.app import create_api
from shared.control.batches import STAGED_PREFIX
from shared.services import Services, build_services
from shared.settings import load_settings

SHAPES = ("clevertap", "mixpanel", "segment")


def event_batches(events: int, batch_size: int, *, seed: int = 7, hours: int = 2) -> list[bytes]:
    """`events` deterministic events (nested properties, mixed types, unicode) as NDJSON bodies."""
    return list(iter_event_batches(events, batch_size, seed=seed, hours=hours))


def iter_event_batches(events: int, batch_size: int, *, seed: int = 7, hours: int = 2,
                       shapes: tuple[str, ...] = SHAPES) -> Iterator[bytes]:
    """The same NDJSON bodies one at a time, made as they are asked for (their events in time order)."""
    source = sample_data.events(events, seed=seed, hours=hours, shapes=shapes)
    while chunk := list(islice(source, batch_size)):
        yield sample_data.ndjson(chunk)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class IntakeServer:
    """The product's HTTP API under uvicorn in a thread, serving whichever variant's services are current."""

    def __init__(self) -> None:
        self.current: Services | None = None
        self.port = _free_port()
        config = uvicorn.Config(create_api(self._services), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="bench-api", daemon=True)

    def _services(self) -> Services:
        assert self.current is not None, "no variant is being staged"
        return self.current

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> IntakeServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the benchmark's API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Variant:
    """One export variant's control container, destination and destination container."""

    name: str
    fmt: str
    settings_overrides: dict[str, Any]
    services: Services
    destination_id: str
    destination: ContainerClient
    intake_seconds: float = 0.0
    intake_records: int = 0
    batch_ids: list[str] = field(default_factory=list)

    def staged_blobs(self) -> list[str]:
        return sorted(item.name for item in self.services.control.list(STAGED_PREFIX))

    def staged_bytes(self) -> int:
        container = self.services.control.container
        return sum(blob.size for blob in container.list_blobs(name_starts_with=STAGED_PREFIX))


def container_sas_url(service: BlobServiceClient, container: str) -> tuple[str, str]:
    """(account URL, container SAS with read, write and delete), as a customer generates in the portal."""
    credential = service.credential
    token = generate_container_sas(
        credential.account_name, container, account_key=credential.account_key,
        permission=ContainerSasPermissions(read=True, write=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=12), protocol="https,http",
    )
    return service.url.rstrip("/"), token


def new_variant(service: BlobServiceClient, connection_string: str, run_id: str, name: str, fmt: str,
                work_dir: Path, slug: str, **settings: Any) -> Variant:
    overrides: dict[str, Any] = {
        "control_storage_connection": connection_string,
        "control_container": f"bench-{run_id}-{slug}-ctl",
        "local_secrets_path": str(work_dir / f"{run_id}-{slug}-secrets.json"),
        "allow_http_loopback": True,
        **settings,
    }
    destination = service.create_container(f"bench-{run_id}-{slug}-out")
    services = build_services(load_settings(**overrides))
    return Variant(name, fmt, overrides, services, f"bench-{slug}", destination)


def destination_body(service: BlobServiceClient, container: str, fmt: str, **extra: Any) -> dict[str, Any]:
    """A PUT /api/destinations body for `container` with a SAS (and any `extra` settings), prefix `bench/`."""
    account_url, token = container_sas_url(service, container)
    return {"endpoint": account_url, "container": container, "prefix": "bench/", "format": fmt,
            "compression": "gzip", "auth": {"type": "sas", "sas_token": token}, **extra}


def register_destination(client: httpx.Client, service: BlobServiceClient, variant: Variant) -> None:
    body = destination_body(service, variant.destination.container_name, variant.fmt)
    response = client.put(f"/api/destinations/{variant.destination_id}", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"could not create the benchmark destination: {response.text}")


def stage(server: IntakeServer, service: BlobServiceClient, variant: Variant, bodies: Iterable[bytes]) -> None:
    """Register the variant's destination and POST every body to the intake webhook; time the POSTs."""
    server.current = variant.services
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        register_destination(client, service, variant)
        url = f"/api/destinations/{variant.destination_id}/batches"
        for body in bodies:
            started = time.perf_counter()
            response = client.post(url, params={"type": "events"}, content=body,
                                   headers={"content-type": "application/x-ndjson"})
            variant.intake_seconds += time.perf_counter() - started
            if response.status_code != 202:
                raise RuntimeError(f"intake refused a benchmark batch: {response.status_code} {response.text[:500]}")
            accepted = response.json()
            variant.intake_records += accepted["records"]
            variant.batch_ids.append(accepted["batch_id"])
    server.current = None


@dataclass(frozen=True)
class Landed:
    """What a destination container holds under the benchmark's prefix."""

    records: int  # as its manifests list them
    bytes: int  # the data files' bytes, as its manifests list them
    manifests: int
    files: int  # data files, counted by listing (whatever the manifests say)


def landed(container: ContainerClient, prefix: str = "bench/") -> Landed:
    records = size = manifests = files = 0
    for blob in container.list_blobs(name_starts_with=prefix):
        if "/_manifests/" not in blob.name:
            files += 1
            continue
        manifest = orjson.loads(container.download_blob(blob.name).readall())
        records += manifest["records"]
        size += manifest["bytes"]
        manifests += 1
    return Landed(records, size, manifests, files)


def delete_variant(service: BlobServiceClient, variant: Variant) -> None:
    for name in (variant.destination.container_name, variant.settings_overrides["control_container"]):
        try:
            service.delete_container(name)
        except Exception:  # cleanup is best effort; Azurite's data folder can always be removed
            continue
    Path(variant.settings_overrides["local_secrets_path"]).unlink(missing_ok=True)
