"""An alert's JSON body: `text` (what Slack and Teams incoming webhooks show as is), the structured fields a program
reads (`type`, `kind`, `destination_id`, `alert_id`, `occurred_at`, `data`), nothing secret.

The words are made here from the alert's facts, which hold ids, codes, times and the plain-words messages batch
states keep (a state never holds a secret); a webhook URL, a SAS token or a key is never among them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from shared.control.alerts_outbox import Alert
from shared.control.batch_state import iso

TYPE_PREFIX = "export.destination."
_MAX_MESSAGE = 600  # of a batch's error message quoted in the text


def alert_body(alert: Alert) -> bytes:
    """The bytes POSTed (and signed): compact JSON, keys in a fixed order."""
    return orjson.dumps({
        "type": TYPE_PREFIX + alert.kind,
        "kind": alert.kind,
        "destination_id": alert.destination_id,
        "text": alert_text(alert),
        "alert_id": alert.alert_id,
        "occurred_at": iso(alert.occurred_at),
        "day": alert.day,
        "data": alert.details,
        "status_url": f"/api/destinations/{alert.destination_id}/status",
    })


def alert_text(alert: Alert) -> str:
    return _TEXTS[alert.kind](alert.destination_id, alert.details)


def _quoted(message: object) -> str:
    """A message as a sentence of the text: cut at _MAX_MESSAGE, ending with a full stop."""
    text = str(message or "").strip()
    text = text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _batch_failed(destination: str, facts: dict[str, Any]) -> str:
    return (f":x: Export to destination '{destination}' failed: batch {facts.get('batch_id')} "
            f"({facts.get('error_code')}): {_quoted(facts.get('message'))} Once fixed, retry it (POST "
            f"/api/batches/{facts.get('batch_id')}/retry), or PUT new credentials to retry all of them. Further "
            "failures of this destination today are not alerted again; its status lists them.")


def _paused(destination: str, facts: dict[str, Any]) -> str:
    who = "automatically" if facts.get("by") == "auto" else "by an operator"
    return (f":double_vertical_bar: Destination '{destination}' was paused {who}: {_quoted(facts.get('reason'))} "
            "Its batches are still accepted and wait; resume it with POST "
            f"/api/destinations/{destination}/resume, or PUT new credentials.")


def _sas_expiring(destination: str, facts: dict[str, Any]) -> str:
    return (f":warning: The SAS token of destination '{destination}' expires on {facts.get('expiry')} (in "
            f"{facts.get('days_left')} days). Renew it and update the destination (PUT) before then, or its exports "
            "will fail.")


def _sas_expired(destination: str, facts: dict[str, Any]) -> str:
    return (f":x: The SAS token of destination '{destination}' expired on {facts.get('expiry')}: its exports fail "
            "until it is renewed and the destination updated (PUT), which retries its failed batches.")


def _recovered(destination: str, facts: dict[str, Any]) -> str:
    return (f":white_check_mark: Destination '{destination}' recovered: batch {facts.get('batch_id')} landed after "
            f"{facts.get('failed_runs')} failed export run(s) since {facts.get('failing_since')}.")


_TEXTS: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "batch_failed": _batch_failed, "paused": _paused, "sas_expiring": _sas_expiring, "sas_expired": _sas_expired,
    "recovered": _recovered,
}
