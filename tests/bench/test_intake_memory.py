"""Intake memory (issue 11, item 1), measured as `make bench` measures it but with 24 MiB bodies: the growth of
a server process's peak resident set while it takes one body, against the body's inflated size.

NDJSON, plain or gzip, is held to the issue's target, 1.5x: intake keeps one buffer of staged text per
partition, and staging hashes and uploads that buffer as it is (1.04x and 1.06x at 90 MiB, bench/README.md,
"Intake memory"). A JSON array is not there yet: its body is gathered whole and read in place, so the body and
its staged text are held together (2.01x at 90 MiB; the fixed costs below make it 2.1x here), and the bound
asserted is that with some margin, not the target of 2x. Before, a JSON array was parsed into one tree
(21.8x its size); then staging joined each partition's lines again (2.9x for every kind).

24 MiB, not less: the fixed costs (the 1 MiB pieces the body is fed in, the inflater's, the allocator's) are
about 4 MB, which is 0.33x of a 12 MiB body (NDJSON measured 1.28x-1.43x there) but 0.17x of this one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.intake_memory import KINDS, MB, measure
from tests.support.azurite import Azurite

BODY_MIB = 24
GUARD = {"ndjson": 1.5, "ndjson+gzip": 1.5, "json-array": 2.3}  # peak RSS growth / inflated body


@pytest.mark.parametrize("kind", KINDS)
def test_intake_peak_memory_stays_within_a_few_times_the_body(azurite: Azurite, tmp_path: Path, kind: str) -> None:
    row = measure(azurite.connection_string, kind, BODY_MIB * MB, work_dir=tmp_path)

    assert row["status"] == 202, row["error"]
    assert row["records"] > 80_000
    assert row["ratio"] <= GUARD[kind], row
