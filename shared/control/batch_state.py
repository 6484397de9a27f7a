"""The batch state document (`states/{batch_id}.json`) as a typed, immutable model.

It loads the JSON documents the app has always written and saves them back byte for byte: fields are
declared in the order the keys have always been written (the order `stage_batch` first wrote them), every
key is always present (none has ever been optional), timestamps are written by `iso` as they always were,
and a key this model does not know is refused rather than dropped on the next save.

A state is never edited: `shared.control.transitions` makes the next state from the current one, and the
lists are tuples so that nothing can append to a state behind the transitions' back.

Pydantic rather than a dataclass, as the destination record: the document is validated where it is read
(a wrong type or an unknown key fails there, naming the field), and serialization follows field order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)

StateName = Literal["pending", "running", "landed", "failed"]
RecordType = Literal["events", "profiles"]
RECORD_TYPES: tuple[RecordType, ...] = ("events", "profiles")
STATES: tuple[StateName, ...] = ("pending", "running", "landed", "failed")


def iso(moment: datetime) -> str:
    """How control storage writes a moment: UTC, microseconds, a trailing Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[AwareDatetime, PlainSerializer(iso, return_type=str)]


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys added after documents were first stored (issue 11). Each has a default that older documents load
    # with, and is written only when it differs from that default, so an older document saves back byte for
    # byte. They come last, after the keys every document has.
    _added_later: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        document: dict[str, Any] = handler(self)
        for name in self._added_later:
            if getattr(self, name) == type(self).model_fields[name].default:
                document.pop(name, None)
        return document


class StagedPartition(_Stored):
    """One partition's staged records: what intake wrote, what the export pass reads."""

    key: str  # "date=YYYY-MM-DD/hour=HH" for events, "" for profiles
    blob: str  # the staged blob in control storage (one JSON record per line) that holds the records
    records: int
    bytes: int  # the records' size: the whole blob, or with `offset` the length of their range in it
    columns: tuple[str, ...]  # the partition's flattened keys, sorted (the CSV header)
    # The records' SHA-256 as intake wrote them: the export checks it reads exactly these bytes.
    # None in documents staged before issue 11 (their blobs are read unchecked).
    sha256: str | None = None
    # Where the records start in `blob`: since issue 13 a batch's partitions share one staged blob, each a
    # range of it (`bytes` long). None in documents staged before, whose blob is the partition's alone.
    offset: int | None = None

    _added_later = ("sha256", "offset")

    def byte_range(self) -> tuple[int | None, int | None]:
        """(offset, length) to read: the partition's range of a shared blob, or (None, None) for a whole blob."""
        return (None, None) if self.offset is None else (self.offset, self.bytes)


class LandedFile(_Stored):
    """A data file the batch landed in the destination, as its manifest lists it."""

    name: str
    records: int
    bytes: int
    md5: str
    content_md5: str
    partition: str


class LastError(_Stored):
    """Why the latest attempt did not land, in words for the customer."""

    code: str
    message: str
    at: Timestamp
    attempt: int


class BatchState(_Stored):
    batch_id: str
    destination_id: str
    type: RecordType
    state: StateName
    records: int
    staged_bytes: int
    body_sha256: str
    partitions: tuple[StagedPartition, ...]
    attempts: int  # since the last retry: the attempt budget counts these
    total_attempts: int
    created_at: Timestamp
    updated_at: Timestamp
    next_attempt_at: Timestamp | None  # set while pending
    started_at: Timestamp | None  # of the latest attempt
    finished_at: Timestamp | None  # landed or failed
    export_date: str | None  # YYYY-MM-DD, fixed by the first attempt: profiles land under it
    blobs: tuple[LandedFile, ...]
    written_blobs: tuple[str, ...]  # parts announced before their commit, until the batch lands
    output_bytes: int
    manifest: str | None
    last_error: LastError | None
    notes: tuple[str, ...]
    # Attempts (since the last retry) whose worker died with no outcome recorded: each was taken over by a
    # later pass. They count against the attempt budget like any attempt; the reason names them.
    crashes: int = 0
    # The destination's `generation` the batch was staged for: a destination deleted and created again under
    # the same id has a new one and never exports an earlier one's batches. None: staged before issue 11.
    destination_generation: str | None = None
    # When retention (or a forced delete of the destination) removed the staged records: no retry after that.
    staged_deleted_at: Timestamp | None = None
    # The coalesced run the batch joined (`shared.control.runs`); None: the batch is exported on its own.
    run_id: str | None = None
    # When an operator discarded the failed batch (POST /api/batches/{id}/discard, issue 17): it stays failed,
    # is no longer waiting for a retry or new credentials, and lands only if retried on purpose.
    discarded_at: Timestamp | None = None

    _added_later = ("crashes", "destination_generation", "staged_deleted_at", "run_id", "discarded_at")

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> BatchState:
        return cls.model_validate(document)

    def to_json(self) -> dict[str, Any]:
        """The stored document: every key, in the order it has always been written."""
        return self.model_dump(mode="json")

    def changed(self, **changes: Any) -> BatchState:
        """A copy with `changes`, validated as a loaded document is (a misspelt field fails here).

        For `shared.control.transitions` only: everything else moves a batch through a named transition.
        """
        return BatchState.model_validate({**dict(self), **changes})

    @property
    def finished(self) -> bool:
        """Landed or failed: nothing for the export pass to do until a retry."""
        return self.state in {"landed", "failed"}

    def waiting_at(self, moment: datetime) -> bool:
        """Pending, but not due before a later moment (backing off after a failed attempt)."""
        return self.state == "pending" and self.next_attempt_at is not None and self.next_attempt_at > moment

    def metadata(self) -> dict[str, str]:
        """The state blob's metadata: what listing batches filters on without reading each document."""
        return {"state": self.state, "destination": self.destination_id, "type": self.type,
                "created": iso(self.created_at)}
