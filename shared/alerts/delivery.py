"""Delivering the outbox's due alerts (issue 17), from the timer, never from an export.

Each alert goes to every target there is when it is delivered: ALERT_WEBHOOK_URL ("app") and the destination's
own alerts.webhook_url ("destination"), each with its own attempts and outcome on the alert. A target's URL is
checked as a destination endpoint is (`check_webhook_url`: https, a public host) each time, and its host's DNS
answer too (a public name may resolve to a private address), unless ALLOW_HTTP_LOOPBACK (development) is set.
The POST is signed (`signing`), follows no redirect, and waits CONNECT_TIMEOUT + READ_TIMEOUT at most; a 2xx is
delivered, anything else is retried after a backoff (1, 2, 4... minutes, at most an hour), and given up after
MAX_ATTEMPTS. A receiver that is down costs its own alerts a retry, nothing else: alerts are sent ALERT_WORKERS at
once, within a time budget, and exports never wait for them.

What is saved and logged of a failure is its kind and the receiver's status and origin: never the URL (a webhook
URL is a credential), and never the text of a `requests` exception (it quotes the URL).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from shared.alerts.payload import alert_body
from shared.alerts.signing import SigningSecretUnusable, signed_headers, signing_key
from shared.control.alerts_outbox import Alert, Delivery, TargetName, due_alerts, read_alert, save_alert
from shared.control.store import PreconditionFailed
from shared.destinations.models import check_webhook_url, host_address, is_public_address
from shared.destinations.record import DestinationRecord
from shared.destinations.service import origin_of
from shared.errors import NotFound
from shared.logging_setup import log_event
from shared.secrets.store import SecretNotFoundError, SecretStoreError
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:  # the composition root sits above every package
    from shared.services import Services

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8  # per target: about two hours of retries, then given up (the status says so)
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
ALERT_WORKERS = 4
USER_AGENT = "azure-blob-export-alerts/1"


@dataclass(frozen=True)
class Target:
    """Where an alert goes: `url` is None when it may not be used, `problem` says why."""

    name: TargetName
    url: str | None
    origin: str | None
    problem: str | None = None


@dataclass
class DeliverySummary:
    due: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    no_target: int = 0
    left: int = 0  # due, but the time budget ran out first: the next timer run takes them
    outcomes: dict[str, str] = field(default_factory=dict)  # alert id -> its state after this run


def check_alert_settings(settings: Settings) -> None:
    """At start (the composition root builds nothing without it): ALERT_WEBHOOK_URL under the endpoint rules, or
    SettingsError naming it (never quoting it). Checked again at each delivery, with its DNS answer."""
    if settings.alert_webhook_url is None:
        return
    try:
        check_webhook_url(settings.alert_webhook_url.get_secret_value(),
                          allow_http_loopback=settings.allow_http_loopback)
    except ValueError as exc:
        raise SettingsError(f"invalid app settings: ALERT_WEBHOOK_URL: {exc}") from None


def backoff(attempts: int) -> timedelta:
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, attempts - 1))


def targets_for(services: Services, record: DestinationRecord | None) -> list[Target]:
    """The alert's targets now: ALERT_WEBHOOK_URL, then the destination's own webhook (its URL from the store)."""
    settings = services.settings
    found = []
    if settings.alert_webhook_url is not None:
        found.append(_checked("app", settings.alert_webhook_url.get_secret_value(), "ALERT_WEBHOOK_URL",
                              settings.allow_http_loopback))
    if record is not None and record.alerts is not None:
        own = record.alerts
        try:
            url = services.secrets.get(own.webhook_secret_name)
        except SecretNotFoundError:
            found.append(Target("destination", None, own.webhook_origin,
                                f"its webhook secret '{own.webhook_secret_name}' is missing from the secret store; "
                                "PUT the destination's alerts.webhook_url again"))
        except SecretStoreError as exc:
            found.append(Target("destination", None, own.webhook_origin,
                                f"the secret store could not be read ({type(exc).__name__})"))
        else:
            found.append(_checked("destination", url, "alerts.webhook_url", settings.allow_http_loopback))
    return found


def _checked(name: TargetName, url: str, setting: str, allow_http_loopback: bool) -> Target:
    try:
        check_webhook_url(url, allow_http_loopback=allow_http_loopback)
    except ValueError as exc:
        return Target(name, None, None, f"{setting} is refused: {exc}")
    return Target(name, url, origin_of(url))


def private_resolution(url: str, *, allow_loopback: bool) -> str | None:
    """Why a checked URL's host may not be reached, from its DNS answer; None if every address is public (or
    loopback, which ALLOW_HTTP_LOOPBACK allows in development)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if host_address(host) is not None:
        return None  # an address: `check_webhook_url` checked it
    try:
        answers = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        return f"its host {host} could not be resolved"
    for answer in answers:
        address = ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0])
        if not is_public_address(address) and not (allow_loopback and address.is_loopback):
            return f"its host {host} resolves to a private, link-local or reserved address ({address})"
    return None


def deliver_due(services: Services, now: datetime, *, budget_seconds: float,
                clock: Callable[[], datetime]) -> DeliverySummary:
    """Deliver every due alert, ALERT_WORKERS at once, starting none once `budget_seconds` are spent."""
    control = services.control
    names = due_alerts(control, now)
    summary = DeliverySummary(due=len(names))
    if not names:
        return summary
    try:
        key: bytes | None = signing_key(services.secrets)
        key_problem = None
    except SigningSecretUnusable as exc:
        key, key_problem = None, str(exc)
    except SecretStoreError as exc:  # the store is down: the alerts stay due, untouched, for the next run
        log_event(log, "alerts not delivered: the signing secret could not be read", logging.WARNING,
                  error=type(exc).__name__, due=len(names))
        summary.left = len(names)
        return summary
    deadline = time.monotonic() + budget_seconds
    with requests.Session() as session, ThreadPoolExecutor(max_workers=ALERT_WORKERS,
                                                            thread_name_prefix="alert") as pool:
        def one(name: str) -> tuple[str, str] | None:
            if time.monotonic() > deadline:
                return None
            return deliver_one(services, name, session, key, key_problem, clock)

        for result in pool.map(one, names):
            if result is None:
                summary.left += 1
                continue
            alert_id, state = result
            summary.outcomes[alert_id] = state
            if state == "pending":
                summary.retrying += 1
            elif state in ("delivered", "failed", "no_target"):
                setattr(summary, state, getattr(summary, state) + 1)
    return summary


def deliver_one(services: Services, name: str, session: requests.Session, key: bytes | None,
                key_problem: str | None, clock: Callable[[], datetime]) -> tuple[str, str] | None:
    """Try an alert's due targets once; save the outcomes (conditional on the alert read). Returns (alert id,
    state), or None if it was not due any more."""
    control = services.control
    read = read_alert(control, name)
    if read is None or read[0].state != "pending":
        return None
    alert, etag = read
    record = _record(services, alert.destination_id)
    targets = targets_for(services, record)
    now = clock()
    if not targets:
        updated = alert.changed(state="no_target", next_attempt_at=None)
    else:
        body = alert_body(alert)
        deliveries = dict(alert.deliveries)
        for target in targets:
            current = deliveries.get(target.name, Delivery())
            if current.state != "pending" or (current.next_attempt_at is not None and current.next_attempt_at > now):
                continue
            deliveries[target.name] = _attempt(session, alert, target, body, key, key_problem, current, clock,
                                               services.settings.allow_http_loopback)
        updated = _overall(alert, deliveries, {t.name for t in targets})
    try:
        save_alert(control, name, updated, etag)
    except PreconditionFailed:  # changed meanwhile (another run took it): its outcome stands
        return None
    return alert.alert_id, updated.state


def _record(services: Services, destination_id: str) -> DestinationRecord | None:
    try:
        return services.destinations.get_record(destination_id)
    except NotFound:
        return None  # deleted since: its alert still goes to ALERT_WEBHOOK_URL


def _overall(alert: Alert, deliveries: dict[str, Delivery], targets: set[str]) -> Alert:
    """The alert's state from its current targets': pending while one is, then delivered if one was."""
    mine = {name: d for name, d in deliveries.items() if name in targets}
    pending = [d for d in mine.values() if d.state == "pending"]
    if pending:
        due = min((d.next_attempt_at for d in pending if d.next_attempt_at is not None), default=None)
        return alert.changed(state="pending", deliveries=deliveries, next_attempt_at=due)
    delivered = any(d.state == "delivered" for d in mine.values())
    return alert.changed(state="delivered" if delivered else "failed", deliveries=deliveries, next_attempt_at=None)


def _attempt(session: requests.Session, alert: Alert, target: Target, body: bytes, key: bytes | None,
             key_problem: str | None, current: Delivery, clock: Callable[[], datetime],
             allow_loopback: bool) -> Delivery:
    started = clock()
    attempts = current.attempts + 1
    status, problem = None, target.problem or key_problem
    if problem is None and target.url is not None and key is not None:
        status, problem = _post(session, target, alert, body, key, allow_loopback)
    context: dict[str, Any] = {"alert_id": alert.alert_id, "kind": alert.kind, "destination_id": alert.destination_id,
               "target": target.name, "origin": target.origin, "attempt": attempts}
    if problem is None:
        log_event(log, "alert delivered", **context, status=status)
        return Delivery(state="delivered", attempts=attempts, origin=target.origin, last_attempt_at=started,
                        delivered_at=clock(), status_code=status)
    gave_up = attempts >= MAX_ATTEMPTS
    log_event(log, "alert not delivered" + ("; given up" if gave_up else "; it is tried again"), logging.WARNING,
              **context, status=status, reason=repr(problem))
    return Delivery(state="failed" if gave_up else "pending", attempts=attempts, origin=target.origin,
                    last_attempt_at=started, next_attempt_at=None if gave_up else started + backoff(attempts),
                    status_code=status, last_error=problem)


def _post(session: requests.Session, target: Target, alert: Alert, body: bytes, key: bytes,
          allow_loopback: bool) -> tuple[int | None, str | None]:
    """POST the signed body: (status, None) when delivered, else (status or None, why)."""
    assert target.url is not None
    resolved = private_resolution(target.url, allow_loopback=allow_loopback)
    if resolved is not None:
        return None, resolved
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               **signed_headers(key, alert.alert_id, int(time.time()), body)}
    try:
        response = session.post(target.url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                allow_redirects=False, stream=True)
    except requests.Timeout:
        return None, f"{target.origin} did not answer within {CONNECT_TIMEOUT + READ_TIMEOUT:g} seconds"
    except requests.ConnectionError:
        return None, f"could not connect to {target.origin}"
    except requests.RequestException as exc:
        return None, f"the request to {target.origin} failed ({type(exc).__name__})"
    with response:
        status = response.status_code
    if 200 <= status < 300:
        return status, None
    if 300 <= status < 400:
        return status, f"{target.origin} answered {status}, a redirect, which alerts do not follow"
    return status, f"{target.origin} answered {status}"

