"""The process's long-lived objects, built lazily once and passed to the code that needs them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from shared.alerts.delivery import check_alert_settings
from shared.control.batches import requeue_destination
from shared.control.export_queue import Covers, ExportQueue, ExportUnit, build_export_queue
from shared.control.store import ControlStore, build_control_container
from shared.destinations.access import check_destination, verify_candidate
from shared.destinations.clients import ClientFactory
from shared.destinations.service import DestinationService
from shared.logging_setup import configure_logging, install_redaction, log_event, redact
from shared.secrets.cache import CachedSecrets
from shared.secrets.factory import build_secret_store
from shared.settings import Settings, get_settings
from shared.telemetry import configure_telemetry

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    control: ControlStore
    secrets: CachedSecrets
    clients: ClientFactory = field(init=False)
    # Called after a destination's credentials change (the export issue re-queues its failed batches).
    on_credentials_changed: Callable[[str], Any] | None = None
    client_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clients = ClientFactory(self.settings, **self.client_options)
        if self.on_credentials_changed is None:
            self.on_credentials_changed = self.requeue_destination

    def requeue_destination(self, destination_id: str) -> int:
        return requeue_destination(self.control, destination_id, on_due=self.nudge)

    @cached_property
    def export_queue(self) -> ExportQueue | None:
        """The export queue (issue 14); None when control storage's connection names no queue service."""
        return build_export_queue(self.settings)

    @cached_property
    def covers(self) -> Covers:
        return Covers()

    def nudge(self, batch_id: str, destination_id: str, delay_seconds: float = 0.0, *,
              record_type: str | None = None) -> bool:
        """Send a batch's export unit on the queue, after its state was committed. Best effort: a batch whose
        message is lost is found by the timer once QUEUE_GRACE_SECONDS have passed. With `record_type`, a batch
        that waits (`delay_seconds`, its destination's `max_delay_seconds`) sends nothing when a message this
        process sent is due to export it (`Covers`); True either way."""
        queue = self.export_queue
        if queue is None:
            return False
        now = time.time()
        cover = record_type if delay_seconds > 0 else None
        if cover is not None and self.covers.covered(destination_id, cover, now=now, due_at=now + delay_seconds):
            return True
        try:
            delay = queue.send(ExportUnit(batch_id=batch_id, destination_id=destination_id),
                               delay_seconds=delay_seconds)
        except Exception as exc:
            log_event(log, "export message not sent; the timer will find the batch", logging.WARNING,
                      batch_id=batch_id, destination_id=destination_id, error=type(exc).__name__)
            return False
        if cover is not None:
            self.covers.sent(destination_id, cover, now + delay)
        return True

    @cached_property
    def destinations(self) -> DestinationService:
        return DestinationService(self.control, self.secrets, self.settings,
                                  verifier=lambda record, secret: verify_candidate(record, secret, self.clients))

    def check_destination(self, destination_id: str) -> dict[str, Any]:
        record = self.destinations.get_record(destination_id)
        return check_destination(record, self.secrets, self.clients)


def build_services(
    settings: Settings, secrets: CachedSecrets | None = None, client_options: dict[str, Any] | None = None
) -> Services:
    install_redaction()
    check_alert_settings(settings)
    control = ControlStore(build_control_container(settings))
    if secrets is None:
        secrets = CachedSecrets(build_secret_store(settings), settings.secret_cache_ttl_seconds)
    return Services(settings=settings, control=control, secrets=secrets, client_options=client_options or {})


@lru_cache(maxsize=1)
def get_services() -> Services:
    """The process-wide services (first call reads settings; nothing happens at import)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    configure_telemetry(redact)  # once per process: Application Insights, an OTLP endpoint, or nothing
    return build_services(settings)
