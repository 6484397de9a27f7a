"""OpenTelemetry for the app: where it goes (setup), the spans of intake and export (spans, exporting), and
the app's metrics (instruments).

Owns: the process's telemetry providers, chosen once from the environment (Application Insights, an OTLP
endpoint, or nothing), and every span, metric and exported log line the app makes. Nothing in it may fail its
caller: a lost span or metric never costs an intake or an export.
Imports: nothing from shared/ (it is in the lowest layer, beside settings, errors and logging_setup, so that
every stage may record what it does); the composition root (shared.services) configures it.
"""

from shared.telemetry.exporting import exporting, run_outcome, said
from shared.telemetry.instruments import (
    batch_failed,
    batch_landed,
    files_written,
    pending_seen,
    records_accepted,
    secret_store_read,
)
from shared.telemetry.setup import configure_telemetry
from shared.telemetry.spans import SpanNotes, note, traced

__all__ = [
    "SpanNotes", "batch_failed", "batch_landed", "configure_telemetry", "exporting", "files_written", "note",
    "pending_seen", "records_accepted", "run_outcome", "said", "secret_store_read", "traced",
]
