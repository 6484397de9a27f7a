"""Batch state documents written by the previous code load into the typed model and save back identically.

The fixtures are real `states/*.json` documents (see fixtures/README.md for where each came from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from shared.control import batches
from shared.control.batch_state import BatchState
from shared.services import Services
from tests.shared.control.stored_states import fixture

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))




@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_stored_state_round_trips_byte_for_byte(path: Path) -> None:
    stored = path.read_bytes()
    state = BatchState.from_json(orjson.loads(stored))
    assert orjson.dumps(state.to_json()) == stored  # ControlStore.put writes orjson.dumps(document)


def test_the_fixtures_cover_every_state_and_every_optional_part() -> None:
    states = [BatchState.from_json(orjson.loads(p.read_bytes())) for p in FIXTURES]
    assert {s.state for s in states} == {"pending", "running", "landed", "failed"}
    assert {s.type for s in states} == {"events", "profiles"}
    assert {s.batch_id[0] for s in states} == {"b", "k"}  # with and without an Idempotency-Key
    assert any(s.last_error and s.state == "pending" for s in states)  # backing off
    assert any(s.last_error and s.state == "running" for s in states)  # the attempt after
    assert any(s.notes for s in states) and any(s.written_blobs and s.blobs for s in states)
    partitions = [p for s in states for p in s.partitions]
    assert any(p.offset is None for p in partitions) and any(p.offset is not None for p in partitions)


def test_a_partition_is_a_byte_range_of_the_batchs_blob_or_a_blob_of_its_own_if_staged_before() -> None:
    one_blob = fixture("pending_staged_with_byte_ranges").partitions
    assert len({p.blob for p in one_blob}) == 1 and [p.byte_range() for p in one_blob] == [(0, 4197), (4197, 4133)]
    blob_each = fixture("pending_staged_with_staging_ids").partitions
    assert len({p.blob for p in blob_each}) == 2 and [p.byte_range() for p in blob_each] == [(None, None)] * 2
    assert [(p.key, p.records, p.sha256) for p in one_blob] == [(p.key, p.records, p.sha256) for p in blob_each]


@pytest.mark.parametrize("name", ["landed_with_notes", "pending_backing_off_after_busy_destination",
                                  "failed_profiles_with_idempotency_key", "running_part_recorded_before_commit"])
def test_control_storage_holds_the_same_bytes_and_metadata_after_a_save(services: Services, name: str) -> None:
    path = Path(__file__).parent / "fixtures" / f"{name}.json"
    document = orjson.loads(path.read_bytes())
    batches.save_state(services.control, BatchState.from_json(document))
    blob = services.control.container.get_blob_client(batches.state_blob(document["batch_id"]))
    assert blob.download_blob().readall() == path.read_bytes()
    assert blob.get_blob_properties().metadata == {  # what listing batches filters on, as before
        "state": document["state"], "destination": document["destination_id"], "type": document["type"],
        "created": document["created_at"],
    }
    assert batches.get_state(services.control, document["batch_id"]) == BatchState.from_json(document)


def test_a_mistyped_document_is_refused_not_half_read() -> None:
    document = orjson.loads(FIXTURES[0].read_bytes())
    with pytest.raises(ValidationError, match="extra_forbidden"):
        BatchState.from_json({**document, "atempts": 2})  # would be dropped by the next save
    with pytest.raises(ValidationError, match="state"):
        BatchState.from_json({**document, "state": "done"})
    with pytest.raises(ValidationError, match="notes"):
        BatchState.from_json({k: v for k, v in document.items() if k != "notes"})
    with pytest.raises(ValidationError, match="timezone"):
        BatchState.from_json({**document, "created_at": "2026-11-20T09:00:00"})


def test_a_state_cannot_be_edited_in_place() -> None:
    state = fixture("running_part_recorded_before_commit")
    with pytest.raises(ValidationError, match="frozen"):
        state.state = "landed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        state.written_blobs.append("x")  # type: ignore[attr-defined]


def _previous_public_status(state: dict[str, Any]) -> dict[str, Any]:
    """`public_status` as it was at 0bff63f, on the stored document: the API's answer must not change, but for the
    keys added since, `run_id` (issue 13: the coalesced run a batch is in) and `discarded_at` (issue 17: when an
    operator discarded it), null for these documents."""
    return {
        "batch_id": state["batch_id"], "state": state["state"], "type": state["type"],
        "destination_id": state["destination_id"], "records": state["records"], "bytes": state["staged_bytes"],
        "output_bytes": state["output_bytes"], "attempts": state["attempts"],
        "total_attempts": state["total_attempts"], "created_at": state["created_at"],
        "updated_at": state["updated_at"], "started_at": state["started_at"], "finished_at": state["finished_at"],
        "next_attempt_at": state["next_attempt_at"] if state["state"] == "pending" else None,
        "blobs": state["blobs"], "manifest": state["manifest"], "run_id": state.get("run_id"),
        "last_error": state["last_error"], "notes": state["notes"], "discarded_at": state.get("discarded_at"),
    }


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_the_status_answer_is_byte_identical(path: Path) -> None:
    document = orjson.loads(path.read_bytes())
    answer = batches.public_status(BatchState.from_json(document))
    assert orjson.dumps(answer) == orjson.dumps(_previous_public_status(document))


def test_get_batch_answers_the_stored_state(api: httpx.Client, services: Services) -> None:
    document = orjson.loads((Path(__file__).parent / "fixtures" / "landed_with_notes.json").read_bytes())
    batches.save_state(services.control, BatchState.from_json(document))
    answer = api.get(f"/api/batches/{document['batch_id']}")
    assert answer.status_code == 200
    assert answer.content == orjson.dumps(_previous_public_status(document))
