"""A typed Parquet destination's schema in control storage: each field's column and type, fixed when first seen
(`shared.formats.parquet_schema` holds the rules; this module keeps the document).

One document per destination (and generation: a destination deleted and created again starts afresh), with a
section per record type: ``parquet-schemas/{destination_id}/{generation}.json``. Exports of one destination may
run at once (its events and its profiles, a coalesced run beside a batch on its own, two instances): every change
is a conditional write on the ETag the change was computed from, and a writer that loses re-reads the document
and computes its change again, so no fixed type is ever lost or changed. What it had asked for that another
export fixed meanwhile, it takes as fixed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from shared.control.store import ControlStore, PreconditionFailed
from shared.errors import DestinationProblem
from shared.formats.parquet_schema import SchemaRequest, TypedSchema
from shared.logging_setup import log_event

log = logging.getLogger(__name__)

SCHEMAS_PREFIX = "parquet-schemas/"
MAX_TRIES = 30  # conditional writes lost in a row before giving up (each loser waits a few ms, at random)


def schema_blob(destination_id: str, generation: str | None) -> str:
    return f"{SCHEMAS_PREFIX}{destination_id}/{generation or 'first'}.json"


class DestinationSchemas:
    """One export's view of a destination's schema document: read once, changed by conditional writes. Its parts
    (several at once on threads) share it."""

    def __init__(self, control: ControlStore, destination_id: str, generation: str | None):
        self.control = control
        self.destination_id, self.generation = destination_id, generation
        self.blob = schema_blob(destination_id, generation)
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None
        self._etag: str | None = None
        self._read = False

    def for_type(self, record_type: str) -> RecordTypeSchema:
        return RecordTypeSchema(self, record_type)

    def schema(self, record_type: str) -> TypedSchema:
        with self._lock:
            self._load_once()
            return self._of(record_type)

    def settle(self, record_type: str, request: SchemaRequest) -> TypedSchema:
        """The schema with `request` answered, fixing in control storage what it lacks."""
        with self._lock:
            self._load_once()
            for attempt in range(MAX_TRIES):
                schema = self._of(record_type)
                missing = schema.missing(request)
                if not missing:
                    return schema
                settled = schema.settled(missing)
                document = dict(self._document or {"destination_id": self.destination_id,
                                                   "generation": self.generation, "record_types": {}})
                document["record_types"] = {**document.get("record_types", {}), record_type: settled.to_json()}
                document["updated_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                try:
                    if self._etag is None:
                        etag = self.control.put(self.blob, document, create_only=True)
                    else:
                        etag = self.control.put(self.blob, document, etag=self._etag)
                except PreconditionFailed:  # another export changed it first: read it again, and redo the change
                    time.sleep(random.uniform(0.002, 0.02) * min(attempt + 1, 5))
                    self._load()
                    continue
                self._document, self._etag = document, etag
                log_event(log, "parquet columns fixed", destination_id=self.destination_id, type=record_type,
                          new_fields=len(missing.new_fields), companions=len(missing.companions),
                          fields=len(settled.fields))
                return settled
        raise DestinationProblem(f"the Parquet schema of destination '{self.destination_id}' kept changing while this "
                                 f"export tried to add to it ({MAX_TRIES} tries); the batch is retried",
                                 code="schema_busy", retryable=True)

    def _load_once(self) -> None:
        if not self._read:
            self._load()

    def _load(self) -> None:
        found = self.control.get(self.blob)
        self._document, self._etag = (found.data, found.etag) if found is not None else (None, None)
        self._read = True

    def _of(self, record_type: str) -> TypedSchema:
        section = ((self._document or {}).get("record_types") or {}).get(record_type)
        return TypedSchema.from_json(record_type, section)


class RecordTypeSchema:
    """One record type's schema of a destination: what a Parquet part asks (`shared.formats.parquet_part`)."""

    def __init__(self, schemas: DestinationSchemas, record_type: str):
        self.schemas, self.record_type = schemas, record_type

    def current(self) -> TypedSchema:
        return self.schemas.schema(self.record_type)

    def settle(self, request: SchemaRequest) -> TypedSchema:
        return self.schemas.settle(self.record_type, request)
