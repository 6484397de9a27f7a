"""Intake memory (issue 11, item 1), measured as `make bench` measures it but with 24 MiB bodies: the growth of
a server process's peak resident set while it takes one body, against the body's inflated size.

Every kind is held to 1.5x, NDJSON's target (a JSON array's is 2x): intake reads NDJSON a line at a time and a
JSON array an element at a time as the body arrives, and keeps one buffer of staged text per partition, which
staging hashes and uploads as it is (1.05x, 1.06x and 1.04x at 90 MiB, bench/README.md, "Intake memory").
Before, a JSON array was parsed into one tree (21.8x its size); then staging joined each partition's lines
again (2.9x for every kind); then an array's body was gathered whole beside its staged text (2.0x; 2.13x here).

24 MiB, not less: the fixed costs (the 1 MiB pieces the body is fed in, the inflater's, the allocator's, the
4 MiB an array's start is kept whole) are about 4-6 MB, which is 0.4x of a 12 MiB body but 0.2x of this one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.intake_memory import KINDS, MB, measure
from tests.support.azurite import Azurite

BODY_MIB = 24
GUARD = 1.5  # peak RSS growth / inflated body, for every kind


@pytest.mark.parametrize("kind", KINDS)
def test_intake_peak_memory_stays_within_a_few_times_the_body(azurite: Azurite, tmp_path: Path, kind: str) -> None:
    row = measure(azurite.connection_string, kind, BODY_MIB * MB, work_dir=tmp_path)

    assert row["status"] == 202, row["error"]
    assert row["records"] > 80_000
    assert row["ratio"] <= GUARD, row
