"""A pytest-httpserver started for a test session and stopped at its end (the fakes' servers)."""

from __future__ import annotations

import ssl
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
