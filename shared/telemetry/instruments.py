"""The app's metrics, each recorded by one function named for what happened.

| metric | kind, unit | attributes | recorded when |
| --- | --- | --- | --- |
| export.records.accepted | counter, {record} | destination_id, record_type | intake staged a new batch (202) |
| export.records.landed | counter, {record} | destination_id, record_type | a batch landed (alone or in a run) |
| export.records.failed | counter, {record} | destination_id, record_type | a batch failed for good (no retry left) |
| export.lag | histogram, s | destination_id, record_type | a batch landed: from its acceptance |
| export.duration | histogram, s | destination_id, record_type, unit, outcome | an export attempt ended |
| export.bytes.written | counter, By | destination_id, record_type | a batch or run landed: its files' bytes |
| export.batches.pending | gauge, {batch} | destination_id | read: what the last listing of due batches saw |
| secrets.store.reads | counter, {read} | (none) | the secret cache read the store (a miss) |

Records count a batch's records as accepted, whether or not a filter later drops some from the files, so that
accepted = landed + failed + still pending, per destination and type. The pending gauge costs no request: it
reports the count the export pass or the sweeper last saw when it listed the open markers anyway (one count per
destination, zero once a destination's batches are all done), so it is as fresh as the last listing.

The instruments come from the global meter provider, looked up when first used: until telemetry is configured
(shared.telemetry.setup), they record nothing and cost next to nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation

from shared.telemetry.guard import guarded
from shared.telemetry.spans import note

METER_NAME = "azure_blob_export"
# Seconds: an export takes from a tenth of a second to minutes; a batch lands seconds to hours after intake.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
LAG_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class _Pending:
    """The due batches per destination, as the last listing saw them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def saw(self, counts: Mapping[str, int]) -> None:
        with self._lock:  # a destination seen before and absent now has none pending
            self._counts = {**dict.fromkeys(self._counts, 0), **counts}

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = dict(self._counts)
        return [Observation(count, {"destination_id": destination}) for destination, count in counts.items()]


PENDING = _Pending()


@cache
def _instruments() -> dict[str, Any]:
    meter = metrics.get_meter(METER_NAME)
    meter.create_observable_gauge("export.batches.pending", [PENDING.observe], unit="{batch}",
                                  description="Batches accepted and not yet landed or failed, per destination")
    return {
        "accepted": meter.create_counter("export.records.accepted", unit="{record}",
                                         description="Records in batches accepted by intake"),
        "landed": meter.create_counter("export.records.landed", unit="{record}",
                                       description="Records in batches landed at their destination"),
        "failed": meter.create_counter("export.records.failed", unit="{record}",
                                       description="Records in batches that failed with no retry left"),
        "lag": meter.create_histogram("export.lag", unit="s", explicit_bucket_boundaries_advisory=LAG_BUCKETS,
                                      description="From a batch's acceptance to its landing"),
        "duration": meter.create_histogram("export.duration", unit="s",
                                           explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                                           description="One export attempt of a batch or a coalesced run"),
        "bytes": meter.create_counter("export.bytes.written", unit="By",
                                      description="Bytes of the files written to destinations"),
        "secret_reads": meter.create_counter("secrets.store.reads", unit="{read}",
                                             description="Reads of the secret store (cache misses)"),
    }


def _counter(name: str) -> Counter:
    instrument: Counter = _instruments()[name]
    return instrument


def _histogram(name: str) -> Histogram:
    instrument: Histogram = _instruments()[name]
    return instrument


def _where(destination_id: str, record_type: str) -> dict[str, str]:
    return {"destination_id": destination_id, "record_type": record_type}


@guarded
def records_accepted(destination_id: str, record_type: str, *, batch_id: str, records: int, staged_bytes: int,
                     new: bool) -> None:
    """Intake staged a batch (`new`), or found the one an earlier request with its idempotency key made."""
    note(batch_id=batch_id, record_type=record_type, records=records, bytes=staged_bytes,
         outcome="accepted" if new else "replayed")
    if new:
        _counter("accepted").add(records, _where(destination_id, record_type))


@guarded
def files_written(destination_id: str, record_type: str, *, files: int, written_bytes: int) -> None:
    """An export (a batch or a run) wrote its files and manifest: on its span, and the bytes counter."""
    note(files=files, bytes=written_bytes)
    _counter("bytes").add(written_bytes, _where(destination_id, record_type))


@guarded
def batch_landed(destination_id: str, record_type: str, *, records: int, accepted_at: datetime,
                 landed_at: datetime) -> None:
    where = _where(destination_id, record_type)
    _counter("landed").add(records, where)
    _histogram("lag").record(max(0.0, (landed_at - accepted_at).total_seconds()), where)


@guarded
def batch_failed(destination_id: str, record_type: str, *, records: int, error_code: str | None = None) -> None:
    """A batch failed with no retry left (a retried one is not failed yet); `error_code` goes on its span."""
    if error_code is not None:
        note(error_code=error_code)
    _counter("failed").add(records, _where(destination_id, record_type))


@guarded
def export_ended(destination_id: str, record_type: str, *, unit: str, outcome: str, seconds: float) -> None:
    """An export attempt of a `unit` ('batch' or 'run') ended with `outcome` after `seconds`."""
    _histogram("duration").record(seconds, {**_where(destination_id, record_type), "unit": unit,
                                            "outcome": outcome})


@guarded
def pending_seen(counts: Mapping[str, int]) -> None:
    """A listing of the open markers saw these counts per destination."""
    _instruments()
    PENDING.saw(counts)


@guarded
def secret_store_read() -> None:
    _counter("secret_reads").add(1)
