"""POST /api/batches/{id}/retry writes the batch's open marker before the state (issue 11, item 3).

A control-storage failure between its two writes must never leave a batch pending with no open marker:
no export pass would ever find it. With the marker first, the failure leaves the batch failed (the retry can
be asked again) and a marker the next pass drops.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from azure.core.exceptions import ServiceRequestError

from shared.control import batch_index, batches
from shared.control.batch_state import BatchState
from shared.control.store import as_unavailable
from shared.export.runner import run_export_pass
from shared.services import Services
from tests.shared.export_helpers import is_open

FIXTURE = Path(__file__).parent / "fixtures" / "failed_container_not_found.json"


def stranded(services: Services, batch_id: str) -> bool:
    """Pending, but no open marker: nothing will ever export it."""
    state = batches.get_state(services.control, batch_id)
    return state.state == "pending" and not is_open(services.control, batch_id)


def fail_the_second_write(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Control storage fails the second write it is asked for (the one after the retry's first write)."""
    control, writes = services.control, []
    for method in ("put", "put_bytes"):
        real = getattr(control, method)

        def failing(name: str, *args: object, _real: object = real, **kwargs: object) -> object:
            writes.append(name)
            if len(writes) == 2:
                raise as_unavailable(ServiceRequestError("injected: control storage went away"))
            return _real(name, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(control, method, failing)
    return writes


def test_a_failure_between_the_retrys_two_writes_never_strands_the_batch(
    services: Services, monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = BatchState.from_json(orjson.loads(FIXTURE.read_bytes()))
    batch_id = failed.batch_id
    batches.save_state(services.control, failed)
    services.control.put_bytes(batches.failed_marker(failed.destination_id, batch_id), b"")

    with monkeypatch.context() as faults:
        writes = fail_the_second_write(services, faults)
        with pytest.raises(Exception, match="control storage"):
            batches.retry_batch(services.control, batch_id)
    assert not stranded(services, batch_id), "the batch is pending with no open marker: it is never exported"
    opened = batch_index.open_marker(failed.destination_id, batch_id, failed.created_at)
    assert writes[0] == opened, "the retry wrote the state first"
    assert batches.get_state(services.control, batch_id).state == "failed"  # visible, and retryable again

    run_export_pass(services)  # drops the marker of a batch that is still failed; exports nothing
    assert not is_open(services.control, batch_id)
    assert batches.get_state(services.control, batch_id).state == "failed"

    again = batches.retry_batch(services.control, batch_id)
    assert again.state == "pending" and not stranded(services, batch_id)
