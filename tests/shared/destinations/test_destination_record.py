"""Destination documents written by the previous code load into the typed record and save back identically."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from shared.destinations.record import DestinationRecord

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_stored_destination_round_trips_byte_for_byte(path: Path) -> None:
    """Captured from control storage (SAS given and named, CSV, service principal, connection string;
    managed identity with and without a client id; the fixed secret name used before a name per save)."""
    stored = path.read_bytes()
    record = DestinationRecord.from_json(orjson.loads(stored))
    assert orjson.dumps(record.to_json()) == stored  # the control store writes orjson.dumps(document)


def test_every_auth_type_is_covered() -> None:
    kinds = {DestinationRecord.from_json(orjson.loads(p.read_bytes())).auth.type for p in FIXTURES}
    assert kinds == {"sas", "service_principal", "managed_identity", "connection_string"}


def test_a_mistyped_document_is_refused_not_half_read() -> None:
    document = orjson.loads(FIXTURES[0].read_bytes())
    with pytest.raises(ValidationError):
        DestinationRecord.from_json({**document, "formt": "csv"})
    with pytest.raises(ValidationError):
        DestinationRecord.from_json({**document, "format": "avro"})
