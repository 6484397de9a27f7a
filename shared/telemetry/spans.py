"""The app's spans: one per intake request and one per export (a batch on its own, or a coalesced run).

A span carries ids, counts and an outcome, never a secret: its attributes are named below, and a caller adds
only values it already logs (ids, record type, counts, error codes). No URL, SAS, key or exception message is
recorded (an exception is recorded by its type only: its text may quote a request URL).

Nothing here may fail its caller: a span processor that raises (an SDK plug-in, an exporter queue) costs the
span, never the intake or the export. Without a configured tracer provider, every call is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from shared.telemetry.guard import guarded

TRACER_NAME = "azure_blob_export"
# The attribute names a span may carry: the same names the log lines use, so one query language fits both.
ATTRIBUTES = frozenset({
    "destination_id", "batch_id", "run_id", "record_type", "records", "bytes", "files", "attempt", "batches",
    "outcome", "error_code", "error.type", "http.response.status_code",
})

log = logging.getLogger(__name__)


def clean(attributes: dict[str, Any]) -> dict[str, AttributeValue]:
    """The attributes a span may carry, as OpenTelemetry values: a name not in ATTRIBUTES is left out (the
    list is the guard against a value nobody checked), and so is an empty value."""
    unknown = set(attributes) - ATTRIBUTES
    if unknown:
        log.debug("span attributes left out (not in ATTRIBUTES): %s", sorted(unknown))
    return {name: value if isinstance(value, bool | int | float) else str(value)
            for name, value in attributes.items() if name in ATTRIBUTES and value is not None and value != ""}


class SpanNotes:
    """What a caller may do with its span: add attributes, say the outcome. Never raises."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.said: str | None = None  # the outcome, once said

    @guarded
    def set(self, **attributes: Any) -> None:
        self.span.set_attributes(clean(attributes))

    @guarded
    def outcome(self, outcome: str, *, failed: bool = False) -> None:
        """The span's outcome ('accepted', 'landed', 'retried', ...); `failed` marks the span as an error."""
        self.said = outcome
        self.span.set_attribute("outcome", outcome)
        if failed:
            self.span.set_status(Status(StatusCode.ERROR))


@contextmanager
def traced(name: str, *, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[SpanNotes]:
    """A span around the block, current for its duration (log lines written in it carry its trace and span
    ids). An exception leaving the block marks the span as an error with the exception's type and, for an
    error with an HTTP status (shared.errors.AppError), that status: 'refused' below 500, else 'error'."""
    span = _start(name, kind, attributes)
    token = _attach(span)
    notes = SpanNotes(span)
    try:
        yield notes
    except BaseException as exc:
        _record_failure(span, exc)
        raise
    finally:
        _detach(token)
        _end(span)


@guarded
def note(**attributes: Any) -> None:
    """Add attributes to the current span, if there is one (the export adds what it wrote)."""
    trace.get_current_span().set_attributes(clean(attributes))


def _start(name: str, kind: SpanKind, attributes: dict[str, Any]) -> Span:
    try:
        return trace.get_tracer(TRACER_NAME).start_span(name, kind=kind, attributes=clean(attributes))
    except Exception as exc:
        log.debug("span %s not started: %s", name, type(exc).__name__)
        return INVALID_SPAN


def _attach(span: Span) -> object | None:
    try:
        return otel_context.attach(trace.set_span_in_context(span))
    except Exception:
        return None


def _detach(token: object | None) -> None:
    if token is not None:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception:
            return


def _end(span: Span) -> None:
    try:
        span.end()
    except Exception as exc:  # a span processor's on_end that raises: the span is lost, the work is not
        log.debug("span not ended cleanly: %s", type(exc).__name__)


@guarded
def _record_failure(span: Span, exc: BaseException) -> None:
    status = getattr(exc, "status", None)  # shared.errors.AppError's HTTP status (a sibling: not imported)
    refused = isinstance(status, int) and 400 <= status < 500
    attributes: dict[str, AttributeValue] = {"error.type": type(exc).__name__,
                                             "outcome": "refused" if refused else "error"}
    if isinstance(status, int):
        attributes["http.response.status_code"] = status
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        attributes["error_code"] = code
    span.set_attributes(attributes)
    if not refused:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
