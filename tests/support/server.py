"""The API under a real uvicorn server for tests: the same helper the demo and `make serve` use."""

from __future__ import annotations

from scripts.local_server import ApiServer

__all__ = ["ApiServer"]
