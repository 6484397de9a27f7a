"""checkov, in a virtual environment of its own, and its reports.

checkov pins packaging<24, importlib-metadata<8, networkx<2.7 and more, which pytest 9 and this project's other
tools cannot share, so it is not in requirements-dev.txt: the first run installs tests/infra/checkov-requirements.txt
(every package pinned) into a cached virtual environment named by that file's hash, under ~/.cache (or
$XDG_CACHE_HOME), where later runs and other checkouts on the machine find it. A lock keeps two test runs from
installing it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "checkov-requirements.txt"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "azure-blob-export"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def checkov_binary() -> Path:
    """The checkov executable, installing it first if this requirements file has no environment yet."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = cache_root() / f"checkov-{digest}"
    binary = venv / "bin" / "checkov"
    done = venv / ".installed"
    with _locked(cache_root() / f"checkov-{digest}.lock"):
        if done.exists():
            return binary
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        installed = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(REQUIREMENTS)],
            capture_output=True, text=True, timeout=900,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"could not install checkov from {REQUIREMENTS}:\n{installed.stderr[-3000:]}")
        done.touch()
    return binary


def run_checkov(root: Path, *arguments: str) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework and path), offline (--skip-download: no Prisma Cloud calls)."""
    done = subprocess.run([str(checkov_binary()), *arguments, "--skip-download", "--compact", "-o", "json"],
                          cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "LOG_LEVEL": "WARNING"})
    if done.returncode not in (0, 1):  # 1: some check failed; the reports say which
        raise RuntimeError(f"checkov exited {done.returncode}:\n{done.stderr[-3000:]}")
    return list(_reports(done.stdout))


def _reports(text: str) -> Iterator[dict[str, Any]]:
    """checkov prints one JSON document per path it scanned, one after the other; some are lists of reports."""
    decoder = json.JSONDecoder()
    position = 0
    while (position := _skip_space(text, position)) < len(text):
        document, position = decoder.raw_decode(text, position)
        yield from document if isinstance(document, list) else [document]


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
