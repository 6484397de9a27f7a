"""The batch-state documents captured from control storage (fixtures/), read as stored and as typed states."""

from __future__ import annotations

from pathlib import Path

import orjson

from shared.control.batch_state import BatchState

FIXTURES = Path(__file__).parent / "fixtures"


def stored(name: str) -> bytes:
    """A document's bytes exactly as control storage held them."""
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture(name: str) -> BatchState:
    return BatchState.from_json(orjson.loads(stored(name)))


def written(state: BatchState) -> bytes:
    """The bytes control storage would hold for `state` (it writes orjson.dumps of the document)."""
    return orjson.dumps(state.to_json())
