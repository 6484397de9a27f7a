"""Consecutive failed export runs in the activity document (issue 17), as pure merges: in any order the changes
come, a landing ends the runs that failed before it (a recovery), a coalesced run's members count once, a retried
attempt counts not at all, a resume starts the count again, and a destination's deletion is no failed run."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.control.destination_activity import (
    Change,
    DestinationActivity,
    ErrorNote,
    LandedNote,
    failing_runs,
    merged,
)

T0 = datetime(2026, 12, 1, 5, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def failed(minutes: int, batch: str, run: str | None = None, *, will_retry: bool = False,
           code: str = "container_not_found") -> Change:
    return Change("g", error=ErrorNote(at=at(minutes), batch_id=batch, code=code, message="words", attempt=1,
                                       will_retry=will_retry, run_id=run))


def landed(minutes: int, batch: str) -> Change:
    return Change("g", landed=LandedNote(at=at(minutes), batch_id=batch, records=1))


def resumed(minutes: int) -> Change:
    return Change("g", reset_at=at(minutes))


def apply(*changes: Change) -> DestinationActivity:
    activity = DestinationActivity(destination_id="acme")
    for change in changes:
        activity = merged(activity, [change], at(100))
    return activity


def streak(activity: DestinationActivity) -> list[str]:
    return [f.run for f in failing_runs(activity, "g")]


def test_failed_runs_in_a_row_count_and_a_landing_ends_them_as_a_recovery() -> None:
    activity = apply(failed(1, "b1"), failed(2, "b2"), failed(3, "b3"))
    assert streak(activity) == ["b1", "b2", "b3"]
    recovered = apply(failed(1, "b1"), failed(2, "b2"), landed(4, "b4"))
    assert streak(recovered) == []
    recovery = recovered.generations["g"].last_recovery
    assert recovery is not None and recovery.failed_runs == 2 and recovery.failing_since == at(1)
    assert recovery.batch_id == "b4"


def test_the_order_the_changes_come_in_does_not_matter() -> None:
    changes = [failed(1, "b1"), failed(2, "b2"), landed(3, "b3"), failed(4, "b4")]
    for order in itertools.permutations(changes):
        activity = apply(*order)
        assert streak(activity) == ["b4"], order  # b1 and b2 failed before the landing: not in a row with b4


def test_a_coalesced_run_counts_once_and_a_retried_attempt_not_at_all() -> None:
    activity = apply(failed(1, "b1", "r1"), failed(1, "b2", "r1"), failed(1, "b3", "r1"),
                     failed(2, "b4", will_retry=True), failed(3, "b5", "r2"))
    assert streak(activity) == ["r1", "r2"]


@pytest.mark.parametrize("code", ["destination_deleted"])
def test_a_deleted_destination_is_no_failed_run(code: str) -> None:
    assert streak(apply(failed(1, "b1", code=code))) == []


def test_a_resume_starts_the_count_again_but_the_streak_lasts_until_a_landing() -> None:
    activity = apply(failed(1, "b1"), failed(2, "b2"), failed(3, "b3"), resumed(4), failed(5, "b5"))
    assert streak(activity) == ["b5"]
    after = merged(activity, [landed(6, "b6")], at(100))
    recovery = after.generations["g"].last_recovery
    assert recovery is not None and recovery.failed_runs == 4  # the recovery says how long it really failed


def test_a_failure_older_than_the_last_landing_arriving_late_is_not_counted() -> None:
    assert streak(apply(landed(5, "b5"), failed(4, "b4"))) == []
