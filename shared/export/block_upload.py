"""Write one destination file as staged blocks and a single commit, or, when it fits in one block, as a single
Put Blob (both atomic to readers: a small file costs one round trip instead of two).

Block ids name the attempt as well as the block's index: two attempts (two instances during a deploy, with
different GZIP_LEVEL or PART_MAX_BYTES) that stage blocks of the same blob never share an id, so a commit
names exactly its own blocks and never another attempt's. Blocks a commit does not name are discarded by it
(or expire, uncommitted): a re-run still leaves one copy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings, StandardBlobTier


@dataclass(frozen=True)
class WrittenFile:
    name: str
    bytes: int
    md5_hex: str
    md5_base64: str


def tier_of(access_tier: str | None) -> StandardBlobTier | None:
    """The blob tier a destination's `access_tier` ("hot", "cool", "cold") names; None: the account's default."""
    return None if access_tier is None else StandardBlobTier(access_tier.capitalize())


def new_attempt_tag() -> str:
    """A tag for one attempt's blocks: 8 random hex digits (two attempts share one with odds of 1 in 2**32)."""
    return secrets.token_hex(4)


def block_id(attempt: str, index: int) -> str:
    # All ids of one blob must have the same length, including the blocks an older version staged
    # ("block-" and 8 digits: 14 characters), which Azure would otherwise refuse to mix with ours. A blob has
    # at most 50,000 blocks, so 6 digits of index are enough.
    return base64.b64encode(f"{attempt[:8]:0>8}{index:06d}".encode()).decode()


class BlockUploader:
    """Stage blocks of one blob with bounded concurrency, then commit them in order."""

    def __init__(self, container: ContainerClient, name: str, *, block_bytes: int, pool: ThreadPoolExecutor,
                 max_in_flight: int, attempt: str | None = None):
        self.blob = container.get_blob_client(name)
        self.attempt = attempt or new_attempt_tag()  # the export passes its attempt's tag
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
        ident = block_id(self.attempt, len(self._ids))
        self._ids.append(ident)
        # Bound memory: at most max_in_flight blocks are held by uploads at once.
        while len(self._in_flight) >= self.max_in_flight:
            self._in_flight.popleft().result()
        self._in_flight.append(self.pool.submit(self._stage_now, ident, data))

    def _stage_now(self, ident: str, data: bytes) -> None:
        self.blob.stage_block(ident, data, length=len(data))

    def flush(self) -> None:
        """A file of several blocks: start uploading what is buffered (its last block) without waiting for it.

        The caller can then record the part while that upload runs, instead of after it. A file that fits in
        one block is left buffered: ``commit`` writes it with a single Put Blob.
        """
        if self._ids and self._buffer:
            self._stage(bytes(self._buffer))
            self._buffer.clear()

    def commit(self, content_settings: ContentSettings, *, tier: str | None = None) -> WrittenFile:
        """Write the file, in the access tier `tier` ("hot", "cool", "cold"; None: the account's default) set in
        the same call (a Put Blob or the Put Block List), so the file never exists in another tier."""
        digest = self._md5.digest()
        content_settings.content_md5 = bytearray(digest)
        if not self._ids:
            self.blob.upload_blob(bytes(self._buffer), length=len(self._buffer), overwrite=True,
                                  content_settings=content_settings, max_concurrency=1,
                                  standard_blob_tier=tier_of(tier))
        else:
            self.flush()
            while self._in_flight:
                self._in_flight.popleft().result()
            self.blob.commit_block_list([BlobBlock(block_id=i) for i in self._ids],
                                        content_settings=content_settings, standard_blob_tier=tier_of(tier))
        return WrittenFile(self.name, self._size, digest.hex(), base64.b64encode(digest).decode())

    def abandon(self) -> None:
        """Wait for in-flight uploads so none outlives the attempt (uncommitted blocks expire by themselves)."""
        while self._in_flight:
            # The attempt is already failing with its own error; these only need to finish.
            with contextlib.suppress(Exception):
                self._in_flight.popleft().result()

