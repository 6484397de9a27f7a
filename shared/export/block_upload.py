"""Write one destination file as staged blocks and a single commit (atomic to readers).

Block ids are deterministic (the block's index), so a re-run of the same batch stages the same ids and
commits the same list: it overwrites identical content instead of adding a copy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings


@dataclass(frozen=True)
class WrittenFile:
    name: str
    bytes: int
    md5_hex: str
    md5_base64: str


def block_id(index: int) -> str:
    # All ids of one blob must have the same length: fixed-width index.
    return base64.b64encode(f"block-{index:08d}".encode()).decode()


class BlockUploader:
    """Stage blocks of one blob with bounded concurrency, then commit them in order."""

    def __init__(self, container: ContainerClient, name: str, *, block_bytes: int, pool: ThreadPoolExecutor,
                 max_in_flight: int):
        self.blob = container.get_blob_client(name)
        self.name = name
        self.block_bytes = block_bytes
        self.pool = pool
        self.max_in_flight = max_in_flight
        self._buffer = bytearray()
        self._ids: list[str] = []
        self._in_flight: deque[Future[None]] = deque()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._md5.update(data)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self.block_bytes:
            self._stage(bytes(self._buffer[: self.block_bytes]))
            del self._buffer[: self.block_bytes]

    def _stage(self, data: bytes) -> None:
        ident = block_id(len(self._ids))
        self._ids.append(ident)
        # Bound memory: at most max_in_flight blocks are held by uploads at once.
        while len(self._in_flight) >= self.max_in_flight:
            self._in_flight.popleft().result()
        self._in_flight.append(self.pool.submit(self._stage_now, ident, data))

    def _stage_now(self, ident: str, data: bytes) -> None:
        self.blob.stage_block(ident, data, length=len(data))

    def flush(self) -> None:
        """Start uploading what is buffered (the last block) without waiting for it.

        The caller can then record the part while that upload runs, instead of after it.
        """
        if self._buffer or not self._ids:
            self._stage(bytes(self._buffer))
            self._buffer.clear()

    def commit(self, content_settings: ContentSettings) -> WrittenFile:
        self.flush()
        while self._in_flight:
            self._in_flight.popleft().result()
        digest = self._md5.digest()
        content_settings.content_md5 = bytearray(digest)
        self.blob.commit_block_list([BlobBlock(block_id=i) for i in self._ids], content_settings=content_settings)
        return WrittenFile(self.name, self._size, digest.hex(), base64.b64encode(digest).decode())

    def abandon(self) -> None:
        """Wait for in-flight uploads so none outlives the attempt (uncommitted blocks expire by themselves)."""
        while self._in_flight:
            # The attempt is already failing with its own error; these only need to finish.
            with contextlib.suppress(Exception):
                self._in_flight.popleft().result()

