"""A local alert receiver (a real HTTP server) and a Standard Webhooks verifier written here, independently of
shared.alerts.signing: HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}" with the bytes of the base64
after `whsec_`, compared with each `v1,` signature the header lists."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.support import secret_watch
from tests.support.http_servers import running_server


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def kind(self) -> str:
        return str(self.json["kind"])


class Receiver:
    """Records every alert POSTed to its secret path; answers `status` (200 unless told otherwise)."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.path = f"/hooks/T{uuid.uuid4().hex[:8]}/{uuid.uuid4().hex}"  # a webhook URL's path is its secret
        self.url = server.url_for(self.path)
        secret_watch.register(self.url, "alert webhook URL")
        self.received: list[Received] = []
        self.status = 200
        server.expect_request(self.path, method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        received = Received({k.lower(): v for k, v in request.headers.items()}, request.get_data())
        secret_watch.observe("an alert as its receiver got it", received.body)
        secret_watch.observe("an alert's headers", json.dumps(received.headers))
        self.received.append(received)
        return Response("ok", status=self.status)

    def kinds(self) -> list[str]:
        return [r.kind for r in self.received]


@contextmanager
def receiver() -> Iterator[Receiver]:
    with running_server() as server:
        yield Receiver(server)


def verify(received: Received, secret: str, *, tolerance_seconds: int = 300) -> None:
    """Raise AssertionError unless the alert carries a valid Standard Webhooks signature made with `secret`."""
    message_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) <= tolerance_seconds, "the timestamp is not recent"
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = message_id.encode() + b"." + timestamp.encode() + b"." + received.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in received.headers["webhook-signature"].split(" ")
             if part.startswith("v1,")]
    assert any(hmac.compare_digest(expected, signature) for signature in given), "the signature does not verify"
