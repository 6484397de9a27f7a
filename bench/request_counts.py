"""Storage requests per small batch, counted on the wire: intake, then one export (a pass, or the export queue).

    .venv/bin/python -m bench.request_counts [--batches 200] [--destinations 20] [--coalesce] [--queue]

Against the Azurite of `make azurite-start` (AZURITE_PORT), in one process: the product's API in-process
(FastAPI's TestClient), N POSTs of 100 events spread over D destinations, then one export pass (or, with
`--queue`, the export queue consumed until empty). Every request any storage client sends goes through
azure-core's RequestsTransport; each is counted by method and by the kind of blob it names (ids and keys folded
into placeholders), and the counts are printed per batch. Used to find work done twice (issues 13 and 14); the
time and CPU it prints are one run's, not a benchmark's.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient

from bench.workload import destination_body
from scripts import sample_data
from scripts.local_azurite import connection_string, port_from_env

Key = tuple[str, str, str]
FOLDS = [  # (pattern, placeholder): the parts of a blob name that differ from batch to batch
    (re.compile(r"^(ctl|dst)[0-9a-f]{6}\d*"), r"\1"),
    (re.compile(r"[bkr]\d{14}[0-9a-f]{17}|k[0-9a-f]{31}"), "ID"),
    (re.compile(r"\d{17}-"), "KEY-"),
    (re.compile(r"\d{8}T\d{6}-"), "T-"),
    (re.compile(r"/[0-9a-f]{16}/"), "/S/"),
    (re.compile(r"dest\d+"), "DEST"),
    (re.compile(r"date=[^/]*/hour=\d+|date%3D[^/]*/hour%3D\d+"), "P"),
    (re.compile(r"messages/[0-9a-f-]{36}"), "messages/M"),
]


def kind_of(method: str, url: str) -> Key:
    path, _, query = url.partition("?")
    parts = path.split("/", 5)
    leaf = parts[4] + "/" + (parts[5] if len(parts) > 5 else "") if len(parts) > 4 else path
    for pattern, placeholder in FOLDS:
        leaf = pattern.sub(placeholder, leaf)
    comp = "&".join(p for p in query.split("&") if p.startswith("comp="))
    return method, leaf, comp


@contextmanager
def counting() -> Iterator[collections.Counter[Key]]:
    """Count every request storage clients send while inside."""
    counts: collections.Counter[Key] = collections.Counter()
    original: Callable[..., Any] = RequestsTransport.send

    def send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
        counts[kind_of(request.method, request.url)] += 1
        return original(self, request, **kwargs)

    RequestsTransport.send = send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        RequestsTransport.send = original  # type: ignore[method-assign]


def report(title: str, counts: collections.Counter[Key], batches: int) -> None:
    print(f"{title}: {sum(counts.values()) / batches:.2f} requests per batch")
    for (method, kind, comp), count in counts.most_common():
        print(f"  {count / batches:6.2f}  {method:6} {kind}{'  ' + comp if comp else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--destinations", type=int, default=20)
    parser.add_argument("--coalesce", action="store_true", help="destinations coalesce (max_delay_seconds 0)")
    parser.add_argument("--queue", action="store_true", help="export through the export queue, not a pass")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from shared.api.app import create_api
    from shared.export.queued import QueueOptions, consume_once
    from shared.export.runner import run_export_pass
    from shared.services import build_services
    from shared.settings import load_settings

    connection = connection_string(port_from_env())
    tag = uuid.uuid4().hex[:6]
    blob_service = BlobServiceClient.from_connection_string(connection)
    with tempfile.TemporaryDirectory() as work:
        settings = load_settings(control_storage_connection=connection, EXPORT_QUEUE_NAME=f"ctl{tag}",
                                 CONTROL_CONTAINER=f"ctl{tag}", LOCAL_SECRETS_PATH=os.path.join(work, "s.json"),
                                 ALLOW_HTTP_LOOPBACK=True)
        services = build_services(settings)
        containers = [f"ctl{tag}", *(f"dst{tag}{i}" for i in range(args.destinations))]
        try:
            with TestClient(create_api(lambda: services)) as api:
                for i in range(args.destinations):
                    name = containers[i + 1]
                    blob_service.create_container(name)
                    coalesce = {"coalesce": {"max_delay_seconds": 0, "target_file_mb": 128}} if args.coalesce else {}
                    body = destination_body(blob_service, name, "jsonl", **coalesce)
                    assert api.put(f"/api/destinations/dest{i}", json=body).status_code in (200, 201)
                events = list(sample_data.events(100 * args.batches))
                with counting() as intake:
                    started, cpu = time.monotonic(), time.process_time()
                    for j in range(args.batches):
                        body = b"".join(orjson.dumps(e) + b"\n" for e in events[j * 100:(j + 1) * 100])
                        posted = api.post(f"/api/destinations/dest{j % args.destinations}/batches",
                                          params={"type": "events"}, content=body,
                                          headers={"content-type": "application/x-ndjson"})
                        assert posted.status_code == 202, posted.text
                    took, cpu = time.monotonic() - started, time.process_time() - cpu
                report(f"intake ({took:.1f} s, {cpu:.1f} s CPU)", intake, args.batches)
                with counting() as export:
                    started, cpu = time.monotonic(), time.process_time()
                    if args.queue:
                        assert services.export_queue is not None
                        options = QueueOptions(batch_size=8, new_batch_threshold=4, max_dequeue_count=10,
                                               visibility_timeout_seconds=30, max_polling_interval_seconds=1)
                        while consume_once(services, services.export_queue, options):
                            pass
                    else:
                        run_export_pass(services)
                    took, cpu = time.monotonic() - started, time.process_time() - cpu
                report(f"export ({'queue' if args.queue else 'pass'}; {took:.1f} s, {cpu:.1f} s CPU)", export,
                       args.batches)
        finally:
            for name in containers:
                blob_service.delete_container(name)


if __name__ == "__main__":
    main()
