"""Shared pieces of the fault and load tests: the scale knob, counting what landed, running passes.

RELIABILITY_SCALE (default 1) multiplies every batch size and count, for bigger local runs:
    RELIABILITY_SCALE=10 .venv/bin/python -m pytest tests/reliability -q
RELIABILITY_REPORT=path appends one JSON line per test with its counts (docs/reliability.md quotes them).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from azure.storage.blob import ContainerClient
from pydantic import AliasChoices, SecretStr

from shared.control import batches
from shared.export.runner import PassSummary, run_export_pass
from shared.services import Services
from shared.settings import Settings
from tests.support.azurite import Azurite

SCALE = float(os.environ.get("RELIABILITY_SCALE", "1"))


def scaled(count: int) -> int:
    return max(1, round(count * SCALE))


def report(test: str, **counts: Any) -> None:
    """Record a test's counts for docs/reliability.md (only when RELIABILITY_REPORT names a file)."""
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, "scale": SCALE, **counts}, default=str) + "\n")


def running_azurite(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Azurite]:
    """A second Azurite, separate from the session's control storage, that a test may stop and start."""
    server = Azurite(data_dir=tmp_path_factory.mktemp(name))
    server.start()
    yield server
    server.stop()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that rebuild `settings` in a child process (load_settings())."""
    env: dict[str, str] = {}
    for name, spec in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        alias = spec.validation_alias
        key = alias.choices[0] if isinstance(alias, AliasChoices) else name
        if isinstance(value, bool):
            env[str(key)] = str(value).lower()
        elif isinstance(value, tuple):
            env[str(key)] = ",".join(value)
        else:
            env[str(key)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def secret_name_of(services: Services, destination_id: str) -> str:
    """The secret a destination's record names (a new one per save)."""
    return str(services.destinations.get_record(destination_id).secret_name)


def state(services: Services, batch_id: str) -> dict[str, Any]:
    """The batch's state document, as control storage holds it."""
    return batches.get_state(services.control, batch_id).to_json()


def run_until(services: Services, done: Callable[[], bool], *, passes: int = 10,
              pause: float = 0.0, **kwargs: Any) -> list[PassSummary]:
    """Run export passes until `done()` (at most `passes`); return their summaries."""
    summaries: list[PassSummary] = []
    for _ in range(passes):
        summaries.append(run_export_pass(services, **kwargs))
        if done():
            return summaries
        time.sleep(pause)
    raise AssertionError(f"not done after {passes} passes: {[s.to_json() for s in summaries]}")


def all_landed(services: Services, batch_ids: list[str]) -> Callable[[], bool]:
    return lambda: all(state(services, b)["state"] == "landed" for b in batch_ids)


def _lines(container: ContainerClient, name: str) -> list[bytes]:
    data = container.download_blob(name).readall()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if name.endswith((".csv", ".csv.gz")):
        return data.splitlines()[1:]  # the header
    return [line for line in data.split(b"\n") if line]


def assert_landed_exactly_once(container: ContainerClient, accepted: dict[str, int]) -> dict[str, int]:
    """Every accepted batch (id -> records) landed once: in one manifest (its own, or its coalesced run's, which
    lists its batches), the manifests' files and nothing else, and the records counted in the files equal the
    records accepted. Returns the counts."""
    names = [b.name for b in container.list_blobs()]
    manifest_names = [n for n in names if "/_manifests/" in n]
    data = sorted(n for n in names if "/_manifests/" not in n and not n.endswith("_export_probe.txt"))
    manifests = [orjson.loads(container.download_blob(n).readall()) for n in manifest_names]
    members = [(b["batch_id"], b["records"]) for m in manifests for b in _batches_of(m)]
    by_batch = Counter(batch_id for batch_id, _ in members)
    assert set(by_batch) == set(accepted), "a manifest is missing, or one exists for a batch never accepted"
    assert max(by_batch.values(), default=1) == 1, "a batch is in more than one manifest"
    assert all(records == accepted[batch_id] for batch_id, records in members)
    listed = [f["name"] for m in manifests for f in m["files"]]
    assert len(listed) == len(set(listed)), "a file is listed by two manifests"
    assert sorted(listed) == data, "data files and manifests disagree (a stale or unlisted part)"
    counted = 0
    for manifest in manifests:
        assert manifest["records"] == sum(b["records"] for b in _batches_of(manifest))
        for entry in manifest["files"]:
            lines = len(_lines(container, entry["name"]))
            assert lines == entry["records"], f"{entry['name']}: {lines} records, manifest says {entry['records']}"
            counted += lines
    assert counted == sum(accepted.values())
    return {"batches": len(accepted), "records_accepted": sum(accepted.values()), "records_landed": counted,
            "data_files": len(data), "manifests": len(manifests)}


def _batches_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The batches a manifest covers: a coalesced run's list, or the one batch it is named for."""
    if "batches" in manifest:
        return list(manifest["batches"])
    return [{"batch_id": manifest["batch_id"], "records": manifest["records"]}]


def control_names(services: Services, *prefixes: str) -> list[str]:
    return sorted(item.name for prefix in prefixes for item in services.control.list(prefix))


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)
