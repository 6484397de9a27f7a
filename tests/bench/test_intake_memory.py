"""Intake memory (issue 11, item 1), measured as `make bench` measures it but with 12 MiB bodies: the growth of
a server process's peak resident set while it takes one body, against the body's inflated size.

The bound asserted here is what the code reaches today with some margin (about 2.9x, see bench/README.md,
"Intake memory"), not yet the issue's target (1.5x for NDJSON, 2x for a JSON array). Before, a JSON array was
parsed into one tree (21.8x its size) and an NDJSON body was held whole beside its lines (3.9x).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.intake_memory import KINDS, MB, measure
from tests.support.azurite import Azurite

BODY_MIB = 12
GUARD = {"ndjson": 3.5, "ndjson+gzip": 3.5, "json-array": 3.5}  # peak RSS growth / inflated body


@pytest.mark.parametrize("kind", KINDS)
def test_intake_peak_memory_stays_within_a_few_times_the_body(azurite: Azurite, tmp_path: Path, kind: str) -> None:
    row = measure(azurite.connection_string, kind, BODY_MIB * MB, work_dir=tmp_path)

    assert row["status"] == 202, row["error"]
    assert row["records"] > 40_000
    assert row["ratio"] <= GUARD[kind], row
