"""Run the HTTP API under a real uvicorn server in a background thread (the demo, `make serve`, the tests).

Locally there is no Functions host: the same FastAPI app that `function_app.py` mounts is served by
uvicorn, with the same routes under /api/. The host's function-key check does not apply here.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread; `start()` returns once it listens."""

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1", log_level: str = "warning"):
        self.host = host
        self.port = port or free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level=log_level, lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the API server did not start on {self.base_url} (is the port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
