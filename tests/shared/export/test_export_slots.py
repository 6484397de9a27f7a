"""A pass exports EXPORT_CONCURRENCY large tasks at once, or up to eight times as many small ones
(`shared.export.slots`): small batches no longer wait two at a time on their round trips."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.export import slots as slots_module
from shared.export.runner import Hooks, run_export_pass
from shared.export.slots import SLOT_BYTES, UNITS_PER_SLOT, ExportSlots, tasks_at_once, units_for
from shared.services import Services, build_services
from tests.shared.export_helpers import jsonl_records, make_destination, manifests, post_batch
from tests.support.azurite import Azurite


def test_a_task_holds_units_by_its_staged_size() -> None:
    assert units_for(0) == units_for(1) == units_for(SLOT_BYTES // UNITS_PER_SLOT) == 1
    assert units_for(SLOT_BYTES // UNITS_PER_SLOT + 1) == 2
    assert units_for(SLOT_BYTES) == units_for(50 * SLOT_BYTES) == UNITS_PER_SLOT
    assert [tasks_at_once(n) for n in (1, 2, 16)] == [8, 16, 16]


def _inside(slots: ExportSlots, size: int, entered: list[str], name: str, leave: threading.Event) -> None:
    with slots.held(size):
        entered.append(name)
        leave.wait(10)


def test_two_slots_hold_two_large_tasks_or_sixteen_small_ones_and_a_large_one_keeps_its_turn() -> None:
    slots = ExportSlots(2)
    entered: list[str] = []
    leave = {name: threading.Event() for name in ("L1", "L2", "L3", *(f"s{i}" for i in range(3)))}
    threads = [threading.Thread(target=_inside, args=(slots, SLOT_BYTES, entered, name, leave[name]))
               for name in ("L1", "L2")]
    for thread in threads:
        thread.start()
    _until(lambda: len(entered) == 2)
    late = [threading.Thread(target=_inside, args=(slots, SLOT_BYTES, entered, "L3", leave["L3"]))]
    late[0].start()
    time.sleep(0.1)  # L3 waits first in line: the small ones asking after it wait behind it
    late += [threading.Thread(target=_inside, args=(slots, 1, entered, f"s{i}", leave[f"s{i}"])) for i in range(3)]
    for thread in late[1:]:
        thread.start()
    time.sleep(0.2)
    assert entered == ["L1", "L2"]
    leave["L1"].set()  # a whole slot frees: L3 takes it, then nothing is left for the small ones
    _until(lambda: len(entered) == 3)
    time.sleep(0.1)
    assert entered == ["L1", "L2", "L3"]
    leave["L2"].set()  # the other slot: all three small ones fit in it
    _until(lambda: len(entered) == 6)
    assert sorted(entered[3:]) == ["s0", "s1", "s2"]
    for event in leave.values():
        event.set()
    for thread in threads + late:
        thread.join(5)

    small = ExportSlots(2)
    inside: list[str] = []
    many = [threading.Thread(target=_inside, args=(small, 1000, inside, f"t{i}", leave["s0"])) for i in range(16)]
    leave["s0"].clear()
    for thread in many:
        thread.start()
    _until(lambda: len(inside) == 16)  # sixteen small tasks in two slots, all at once
    leave["s0"].set()
    for thread in many:
        thread.join(5)


def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def two_slots(services: Services) -> Iterator[Services]:
    yield build_services(services.settings.model_copy(update={"export_concurrency": 2}), secrets=services.secrets)


def _max_exporting(services: Services, batches: int) -> tuple[int, int]:
    """Run a pass; (the most batches between their first commit and its end at once, batches landed)."""
    lock = threading.Lock()
    now = [0]
    most = [0]

    def before_commit(name: str) -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.3)  # the batch is at work (a slow destination): others may start meanwhile
        with lock:
            now[0] -= 1

    landed = run_export_pass(services, hooks=Hooks(before_commit=before_commit)).landed
    return most[0], landed


def test_a_pass_exports_many_small_batches_at_once(api: httpx.Client, azurite: Azurite,
                                                    fresh_container: ContainerClient, two_slots: Services) -> None:
    destination = make_destination(api, azurite, fresh_container)
    records = [[{"event": "e", "ts": 1763629200 + 10 * i + j, "n": j} for j in range(5)] for i in range(12)]
    for batch in records:
        post_batch(api, destination, batch)
    most, landed = _max_exporting(two_slots, len(records))
    assert landed == 12
    assert 2 < most <= 12  # more than EXPORT_CONCURRENCY at once: each is a fraction of a slot
    assert len(manifests(fresh_container)) == 12
    assert sorted(r["ts"] for r in jsonl_records(fresh_container)) == sorted(r["ts"] for b in records for r in b)


def test_large_batches_still_go_export_concurrency_at_a_time(
        api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, two_slots: Services,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots_module, "SLOT_BYTES", 64)  # every batch here stages more: each takes a whole slot
    destination = make_destination(api, azurite, fresh_container)
    for i in range(6):
        post_batch(api, destination, [{"event": "e", "ts": 1763629200 + i, "padding": "x" * 100}])
    most, landed = _max_exporting(two_slots, 6)
    assert landed == 6
    assert most == 2


def test_a_task_let_in_after_the_pass_stops_taking_work_does_not_start() -> None:
    """A task may wait for its units past the moment its pass stops taking new work (the time budget): it is then
    told not to start, holds nothing, and its batch stays due for the next pass."""
    slots = ExportSlots(1, stop_at=time.monotonic() + 0.2)
    with slots.held(SLOT_BYTES) as first:
        assert first == UNITS_PER_SLOT
        entered: list[int] = []
        late = threading.Thread(target=lambda: entered.append(_held_units(slots)))
        late.start()
        time.sleep(0.4)  # the whole slot is taken until after stop_at
    late.join(5)
    assert entered == [0]
    with ExportSlots(1).held(SLOT_BYTES) as units:
        assert units == UNITS_PER_SLOT


def _held_units(slots: ExportSlots) -> int:
    with slots.held(1) as units:
        return units
