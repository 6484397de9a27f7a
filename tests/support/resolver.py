"""A test-only name resolver: chosen host names resolve to a local port, everything else resolves normally.

Patches `socket.getaddrinfo` for the whole process (the API server under test runs in-process, in a uvicorn
thread, and the export pass in worker threads: they all see it). urllib3 looks the function up on the `socket`
module at each connection, so `https://victim.blob.core.windows.net` with no port reaches 127.0.0.1:<port> while
the TLS layer still checks the certificate against, and sends SNI for, the real name.

    def test_something(host_routes, attacker):
        host_routes.route("victim.blob.core.windows.net", attacker.port)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_AddrInfo = list[Any]  # socket.getaddrinfo's: (family, type, proto, canonname, sockaddr) tuples


class HostRoutes:
    """Host name -> local port. `getaddrinfo` answers 127.0.0.1:<port> for a routed name whatever port is asked."""

    def __init__(self) -> None:
        self._routes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.lookups: list[str] = []  # routed names looked up, in order
        self._real = socket.getaddrinfo

    def route(self, host: str, port: int) -> None:
        with self._lock:
            self._routes[_normal(host)] = port

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> _AddrInfo:
        name = _normal(host.decode() if isinstance(host, bytes) else str(host or ""))
        with self._lock:
            target = self._routes.get(name)
            if target is not None:
                self.lookups.append(name)
        if target is None:
            return self._real(host, port, family, type, proto, flags)
        kind = socket.SocketKind(type) if type else socket.SOCK_STREAM
        return [(socket.AF_INET, kind, proto or socket.IPPROTO_TCP, "", ("127.0.0.1", target))]


def _normal(host: str) -> str:
    return host.lower().rstrip(".")


@contextmanager
def routed(routes: dict[str, int]) -> Iterator[HostRoutes]:
    """`routes` in force for the block (outside pytest; inside, use the `host_routes` fixture)."""
    table = HostRoutes()
    for host, port in routes.items():
        table.route(host, port)
    original = socket.getaddrinfo
    socket.getaddrinfo = table.getaddrinfo  # type: ignore[assignment]
    try:
        yield table
    finally:
        socket.getaddrinfo = original


@pytest.fixture
def host_routes(monkeypatch: pytest.MonkeyPatch) -> HostRoutes:
    """An empty routing table, installed as the process's resolver for this test."""
    table = HostRoutes()
    monkeypatch.setattr(socket, "getaddrinfo", table.getaddrinfo)
    return table
