"""A pytest-httpserver started for a test session and stopped at its end (the fakes' servers), and a server that
never answers (a dependency that hangs)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pytest_httpserver import HTTPServer


@contextmanager
def running_server(host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None,
                   threaded: bool = True) -> Iterator[HTTPServer]:
    server = HTTPServer(host=host, port=0, ssl_context=ssl_context, threaded=threaded)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on a free port (yielded) that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
