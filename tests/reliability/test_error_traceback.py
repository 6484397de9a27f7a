"""An unexpected error in an export is logged with its traceback, redacted (issue 11, item 6).

A traceback repeats the exception's message, and an SDK error's message can hold the request URL with its
SAS signature: the traceback goes through the same redaction as every log line, and the secret watch (which
reads every log record, traceback included) proves the signature never appears.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from scripts import sample_data
from shared.export import runner
from shared.services import Services
from tests.reliability.fault_helpers import state
from tests.shared.export_helpers import make_destination, post_batch
from tests.support import secret_watch
from tests.support.azurite import Azurite

SIGNATURE = "Zm9yLXRoZS10cmFjZWJhY2stdGVzdC1vbmx5LW5vdC1hLXJlYWwta2V5"


def broken_export(*args: Any, **kwargs: Any) -> Any:
    """A bug deep in the export, whose message carries a URL with a SAS signature."""
    url = f"https://acme.blob.core.windows.net/exports/part.jsonl?sv=2024-08-04&sp=rw&sig={SIGNATURE}"
    raise KeyError(f"no column for {url}")


def test_an_unexpected_export_error_is_logged_with_its_traceback_and_no_signature(
    api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient, services: Services,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    secret_watch.register(SIGNATURE, "a SAS signature inside an exception")
    dest = make_destination(api, azurite, fresh_container)
    bid = post_batch(api, dest, list(sample_data.events(20, hours=1)))["batch_id"]
    monkeypatch.setattr(runner, "write_run", broken_export)

    with caplog.at_level(logging.INFO, logger="shared"):
        summary = runner.run_export_pass(services)
    assert summary.retried == 1
    assert state(services, bid)["last_error"]["code"] == "internal_error"

    traced = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert traced, "the unexpected error was logged by its type only, without a traceback"
    [record] = traced
    assert record.levelno == logging.ERROR and f"batch_id={bid}" in record.getMessage()
    logged = logging.Formatter().format(record)
    assert "Traceback (most recent call last)" in logged
    assert "in broken_export" in logged and "KeyError" in logged
    assert "sig=REDACTED" in logged
    assert SIGNATURE not in caplog.text and SIGNATURE not in logged
