"""The export queue (issue 14): one small message per export unit, in control storage's queue service.

Intake sends a message once a batch's state is committed; the queue-triggered function (or `make serve`'s and
`scripts.worker`'s consumers, which call the same code) exports the unit under its lease. A message is only a
nudge: the state documents stay the truth, so a lost message is found by the timer (`shared.export.sweeper`)
and a duplicate finds its batch landed and does nothing.

Messages are JSON (`ExportUnit`), base64-encoded as the Functions host's queue trigger reads them by default
(`messageEncoding: base64`). A message the consumer cannot handle goes to `<queue>-poison` once it has been
dequeued more than `maxDequeueCount` times (host.json; the host does it in Azure, `consume_once` here).
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    ExponentialRetry,
    QueueClient,
    QueueMessage,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.control.store import POOL_CONNECTIONS, pooled_transport
from shared.settings import Settings

log = logging.getLogger(__name__)

POISON_SUFFIX = "-poison"
# Azure Storage's longest visibility delay is 7 days; a longer backoff is the sweeper's to catch.
MAX_DELAY_SECONDS = 7 * 24 * 3600
MESSAGE_VERSION = 1


class ExportUnit(BaseModel):
    """What a message names: a batch of a destination. For a destination that coalesces, the consumer exports
    the destination's due batches of that batch's type as runs; otherwise the batch on its own.
    `hops`: how many times the unit was sent on again because it was not finished yet (`MAX_HOPS` ends it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = Field(default=MESSAGE_VERSION, ge=1, le=MESSAGE_VERSION)
    batch_id: str = Field(min_length=32, max_length=32, pattern=r"^[bk][a-z0-9]{31}$")
    destination_id: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")
    hops: int = Field(default=0, ge=0, le=1_000_000)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump())

    def next_hop(self) -> ExportUnit:
        return self.model_copy(update={"hops": self.hops + 1})


COVER_MARGIN_SECONDS = 1.0  # a message on its way covers a new batch only while it is at least this far off


class Covers:
    """The messages this process sent for destinations that coalesce and wait (`max_delay_seconds`), by
    destination and record type, with the moment each becomes visible.

    Handling such a message exports the destination's due batches of that type as runs (`shared.export.queued`,
    including those committed after the batch it names), so a batch committed before the message becomes visible,
    and due no earlier than it, needs no message of its own: one message per destination, type and delay in each
    instance, where there was one per batch (each also a function call that found its batch landed). A message
    that is lost, or a batch a message leaves waiting, is found by the timer as before."""

    def __init__(self) -> None:
        self._visible: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def covered(self, destination_id: str, record_type: str, *, now: float, due_at: float) -> bool:
        """Whether a message already sent will be visible after `now` (by the margin) and no later than `due_at`."""
        with self._lock:
            visible = self._visible.get((destination_id, record_type))
        return visible is not None and now + COVER_MARGIN_SECONDS <= visible <= due_at

    def sent(self, destination_id: str, record_type: str, visible_at: float) -> None:
        with self._lock:
            self._visible[(destination_id, record_type)] = visible_at


class MalformedMessage(ValueError):
    """A message that is not an export unit: logged and dropped, never retried."""


def decode_unit(body: bytes | str) -> ExportUnit:
    """The unit a message names; raises MalformedMessage (saying what is wrong, never echoing the body)."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > 4096:
        raise MalformedMessage(f"message of {len(raw)} bytes is too long for an export unit")
    try:
        return ExportUnit.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise MalformedMessage("message is not JSON") from None
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "message" for err in exc.errors()})
        raise MalformedMessage(f"message is not an export unit (fields: {', '.join(fields)})") from None


@dataclass(frozen=True)
class Received:
    """A message taken from the queue: invisible to others until `visible_again`, or deleted."""

    message: QueueMessage

    @property
    def body(self) -> bytes:
        content = self.message.content
        return content if isinstance(content, bytes) else str(content).encode()

    @property
    def dequeue_count(self) -> int:
        return int(self.message.dequeue_count or 0)


class ExportQueue:
    """The export queue and its poison queue."""

    def __init__(self, queue: QueueClient, poison: QueueClient):
        self.queue, self.poison = queue, poison
        self._ready = False

    @property
    def name(self) -> str:
        return str(self.queue.queue_name)

    def ensure(self) -> None:
        """Create both queues once (the host creates its poison queue itself in Azure; locally nothing does)."""
        if self._ready:
            return
        for client in (self.queue, self.poison):
            with suppress(ResourceExistsError):
                client.create_queue()
        self._ready = True

    def send(self, unit: ExportUnit, *, delay_seconds: float = 0) -> int:
        """Send a unit, visible after `delay_seconds` (rounded up; at most 7 days); returns the delay it has."""
        self.ensure()
        delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay_seconds)))
        self.queue.send_message(unit.encode(), visibility_timeout=delay or None)
        return delay

    def receive(self, *, max_messages: int, visibility_seconds: int) -> list[Received]:
        self.ensure()
        found = self.queue.receive_messages(messages_per_page=max_messages, max_messages=max_messages,
                                            visibility_timeout=visibility_seconds)
        return [Received(message) for message in found]

    def keep_invisible(self, received: Received, visibility_seconds: int) -> Received:
        """Extend a message's invisibility while it is being worked on (what the host does for a function)."""
        updated = self.queue.update_message(received.message, visibility_timeout=visibility_seconds)
        received.message.pop_receipt = updated.pop_receipt
        return received

    def delete(self, received: Received) -> None:
        self.queue.delete_message(received.message)

    def to_poison(self, received: Received) -> None:
        """Move a message to the poison queue, as the host does after `maxDequeueCount`."""
        self.ensure()
        self.poison.send_message(received.body)
        self.queue.delete_message(received.message)

    def approximate_length(self) -> int:
        self.ensure()
        return int(self.queue.get_queue_properties().approximate_message_count or 0)


def build_export_queue(settings: Settings, **client_options: Any) -> ExportQueue | None:
    """The export queue of control storage; None when the control connection names no queue service (then the
    timer exports everything, as before the queue existed)."""
    name = settings.export_queue_name
    # A message is a nudge that intake sends before it answers: a queue that does not answer must cost the
    # POST seconds, not the SDK's default minute of retries (the timer finds the batch anyway).
    # One connection pool for the queue and its poison queue, as large as control storage's: a consumer keeps a
    # batch of messages in hand, each renewed while its export runs.
    codec = {"message_encode_policy": BinaryBase64EncodePolicy(), "message_decode_policy": BinaryBase64DecodePolicy(),
             "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
             "transport": pooled_transport(POOL_CONNECTIONS, connection_timeout=5, read_timeout=10),
             **client_options}
    if settings.control_queue_account_url:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        return ExportQueue(QueueClient(settings.control_queue_account_url, name, credential=credential, **codec),
                           QueueClient(settings.control_queue_account_url, name + POISON_SUFFIX,
                                       credential=credential, **codec))
    connection = settings.queue_connection_string
    if not connection or not _names_queue_service(connection):
        return None
    return ExportQueue(QueueClient.from_connection_string(connection, name, **codec),
                       QueueClient.from_connection_string(connection, name + POISON_SUFFIX, **codec))


def _names_queue_service(connection: str) -> bool:
    """Whether a connection string reaches a queue service: an explicit QueueEndpoint, an account on Azure's
    endpoints (EndpointSuffix or the default), or the development storage shortcut."""
    parts = {key.strip().lower(): value for key, _, value in
             (part.partition("=") for part in connection.split(";") if part.strip())}
    if "usedevelopmentstorage" in parts or "queueendpoint" in parts:
        return True
    return "blobendpoint" not in parts and "accountname" in parts
