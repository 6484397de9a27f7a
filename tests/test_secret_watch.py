"""The secret watch itself (tests/support/secret_watch.py): a secret that shows up where people look fails the run,
named by its label and never shown, whether the suite runs in one process or in xdist workers (`make test`), whose
own exit status does not decide the run's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SIG = "Zm9vYmFyYmF6cXV4" * 3  # what a SAS signature looks like; registered by the test below, never a real one
LEAKING = textwrap.dedent(f"""
    import logging

    from tests.support import secret_watch


    def test_logs_a_sas_token() -> None:
        token = secret_watch.register("sv=2025-01-05&sr=c&sp=rw&sig={SIG}", "a SAS token")
        logging.getLogger("shared.anything").warning("writing with %s", token)


    def test_quiet() -> None:
        pass
""")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two xdist workers"])
def test_a_leaked_secret_fails_the_run_and_is_named_not_shown(workers: list[str], tmp_path: Path) -> None:
    (tmp_path / "test_leaking.py").write_text(LEAKING)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.secret_watch", "-p", "no:cacheprovider", "-q",
         *workers, "test_leaking.py"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=180)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed" in run.stdout and "SECRET WATCH: secrets leaked" in run.stdout
    assert "a SAS token (sig" in run.stdout and "in log record of shared.anything" in run.stdout
    assert SIG not in run.stdout + run.stderr
