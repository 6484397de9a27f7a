"""A local fault-injecting HTTP reverse proxy for Azurite (or any plain-HTTP service).

Point a client at `proxy.url` instead of the service: every request is forwarded unchanged with
`http.client`, unless a fault rule matches it, in which case the proxy answers for the service:

    proxy = FaultProxy(upstream_port=azurite.port)
    proxy.start()
    proxy.fail(status=503, times=3)                      # the next 3 requests get 503 ServerBusy
    proxy.fail(status=429, seconds=2, retry_after=1)     # every request for 2 s gets 429 + Retry-After
    proxy.fail(status=None, when=lambda m, p: m == "PUT")  # drop the connection, no answer at all
    proxy.fail(status=None, times=1, forward=True)       # the service does it, but the answer is lost

Rules are checked in the order they were added; a rule is used up after `times` matches or once
`seconds` have passed since it was added. A SAS signature does not cover the host, so a SAS made
for Azurite works through the proxy unchanged.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.azurite import ACCOUNT_NAME

Predicate = Callable[[str, str], bool]  # (method, path) -> does the rule apply
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
CODES = {429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}


@dataclass
class FaultRule:
    status: int | None  # None: close the connection without answering
    times: int | None = None
    until: float | None = None
    retry_after: int | None = None
    when: Predicate | None = None
    forward: bool = False  # pass the request on first, then lose or replace the answer
    hits: int = 0

    def live(self, now: float) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.until is None or now < self.until


@dataclass
class ProxyStats:
    forwarded: int = 0
    injected: list[tuple[str, str, int | None]] = field(default_factory=list)  # (method, path, status)


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.rules: list[FaultRule] = []
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def account_url(self) -> str:
        return f"{self.url}/{ACCOUNT_NAME}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, status: int | None = 503, *, times: int | None = None, seconds: float | None = None,
             retry_after: int | None = None, when: Predicate | None = None, forward: bool = False) -> FaultRule:
        """Answer matching requests with `status` (None: drop the connection) `times` times or for `seconds`.
        With `forward` the service still gets the request; only its answer is replaced."""
        if times is None and seconds is None and when is None:
            raise ValueError("give times, seconds or when: a rule without an end fails everything forever")
        until = None if seconds is None else time.monotonic() + seconds
        rule = FaultRule(status, times, until, retry_after, when, forward)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def injected(self, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for _, _, s in self.stats.injected if status is None or s == status)

    def _fault_for(self, method: str, path: str) -> FaultRule | None:
        now = time.monotonic()
        with self._lock:
            for rule in self.rules:
                if rule.live(now) and (rule.when is None or rule.when(method, path)):
                    rule.hits += 1
                    self.stats.injected.append((method, path, rule.status))
                    return rule
            self.stats.forwarded += 1
        return None


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            rule = proxy._fault_for(self.command, self.path)
            if rule is not None and not rule.forward:
                self._inject(rule)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body if body or self.command in {"PUT", "POST"}
                                 else None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            except OSError:
                self._inject(FaultRule(status=502))
                return
            finally:
                upstream.close()
            if rule is not None:
                self._inject(rule)
                return
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _inject(self, rule: FaultRule) -> None:
            if rule.status is None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            code = CODES.get(rule.status, "InjectedFault")
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                    f"<Message>injected by the test fault proxy</Message></Error>").encode()
            self.send_response(rule.status, REASONS.get(rule.status))
            self.send_header("Content-Type", "application/xml")
            self.send_header("x-ms-error-code", code)
            if rule.retry_after is not None:
                self.send_header("Retry-After", str(rule.retry_after))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    return Handler
