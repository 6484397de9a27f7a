"""Staging uploads each partition's text as intake built it (issue 11, intake memory): the same bytes, not a
copy, and with the hash and size the state records. Since issue 13 the texts are one blob, end to end, each
partition a byte range of it: handed to the upload as a list of the buffers, never joined."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.intake.accept import BodyIntake, IntakeRequest, stage_parsed


class RecordingStore:
    """Just enough of a ControlStore for one staging: every write is kept, nothing exists before."""

    def __init__(self) -> None:
        self.blobs: dict[str, Any] = {}

    def get(self, name: str) -> None:
        return None

    def put_bytes(self, name: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        self.blobs[name] = data

    def put_buffers(self, name: str, buffers: list[bytes]) -> int:
        self.blobs[name] = buffers
        return 1

    def put(self, name: str, doc: Any, **_: Any) -> str:
        self.blobs[name] = doc
        return "etag"


def test_the_staged_blob_is_the_partition_texts_themselves_end_to_end_each_line_once() -> None:
    lines = [orjson.dumps({"event": f"e{n}", "timestamp": 1_700_000_000 + n * 900, "n": n}) for n in range(40)]
    body = b"\xef\xbb\xbf" + b"\n".join(b"  " + line + b"\r\n" for line in lines) + b"\n\n"
    intake = BodyIntake(IntakeRequest("d", "events", "application/x-ndjson", None, None), max_bytes=1 << 20)
    intake.feed(body)
    parsed = intake.finish()
    texts = {p.key: p.text() for p in parsed.partitions.values()}
    control = RecordingStore()

    state, created = stage_parsed(control, intake, parsed, datetime(2026, 12, 1, tzinfo=UTC))  # type: ignore[arg-type]

    assert created and state.records == 40 and len(state.partitions) == 10  # 15 minutes apart: 10 hours
    [blob] = {partition.blob for partition in state.partitions}  # one staged blob for the batch
    buffers = control.blobs[blob]
    assert [p.key for p in state.partitions] == sorted(texts)  # in key order
    offset = 0
    for partition, buffer in zip(state.partitions, buffers, strict=True):
        assert buffer is texts[partition.key]  # uploaded as built: no join, no copy
        assert (partition.offset, partition.bytes) == (offset, len(buffer))  # its range of the blob
        assert partition.sha256 == hashlib.sha256(buffer).hexdigest()
        assert buffer.endswith(b"\n") and b"\n\n" not in buffer and partition.records == buffer.count(b"\n")
        offset += len(buffer)
    assert state.staged_bytes == offset
    assert sorted(b"".join(buffers).splitlines()) == sorted(lines)
