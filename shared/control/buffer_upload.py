"""One block blob written from several buffers as they are: intake's partitions become one staged blob.

The buffers are never joined: each block is a `ByteSpan`, a read-only file over a run of the buffers'
bytes that hands out slices of them (memoryviews), which the HTTP client sends as it reads them. Blocks are
staged several at once, then committed once: readers (the export) see the blob whole or not at all, and
blocks a crash leaves uncommitted are invisible to listings and discarded by the service (after a week).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobBlock, BlobClient


class ByteSpan:
    """Bytes [start, end) of the buffers laid end to end, as a seekable file that copies nothing.

    `read` returns at most what is left of the current buffer (a short read, as a raw file may): callers
    read until they get b"". Seekable, so that the SDK's retry policy can rewind a block it sends again.
    """

    def __init__(self, buffers: Sequence[bytes], start: int, end: int) -> None:
        self._pieces: list[memoryview] = []
        position = 0
        for buffer in buffers:
            view = memoryview(buffer)
            low, high = max(start, position), min(end, position + len(view))
            if low < high:
                self._pieces.append(view[low - position:high - position])
            position += len(view)
        self._length = sum(len(piece) for piece in self._pieces)
        self._position = 0
        self._piece = 0  # the piece `_position` is in, and the offset in it
        self._offset = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        self._piece, self._offset = 0, self._position
        while self._piece < len(self._pieces) and self._offset >= len(self._pieces[self._piece]):
            self._offset -= len(self._pieces[self._piece])
            self._piece += 1
        return self._position

    def read(self, size: int | None = -1) -> memoryview | bytes:
        if self._piece >= len(self._pieces):
            return b""
        piece = self._pieces[self._piece]
        left = len(piece) - self._offset
        count = left if size is None or size < 0 else min(size, left)
        chunk = piece[self._offset:self._offset + count]
        self._offset += count
        self._position += count
        if self._offset == len(piece):
            self._piece, self._offset = self._piece + 1, 0
        return chunk


def block_spans(total: int, block_bytes: int) -> list[tuple[int, int]]:
    """[start, end) of each block: `block_bytes` each, the last one what is left."""
    return [(start, min(start + block_bytes, total)) for start in range(0, total, block_bytes)]


def staged_block_id(index: int) -> str:
    # One staging writes each blob once, under a name of its own (a staging id): the index alone is unique.
    return base64.b64encode(f"{index:06d}".encode()).decode()


def upload_buffers(blob: BlobClient, buffers: Sequence[bytes], *, block_bytes: int, concurrency: int) -> int:
    """Write the buffers, end to end, as the blob's content; return the storage calls it took.

    One buffer that fits in a block is one Put Blob (the SDK sends `bytes` as they are). Anything else is
    blocks of `block_bytes`, cut wherever they fall (a block may hold the end of one buffer and the start of
    the next), `concurrency` staged at once, then one commit.

    Every request carries its body's MD5 (`validate_content`), which the service checks before it keeps the
    bytes: a body damaged on the way is refused before intake answers 202, not found by the export's SHA-256
    check after. It also spares Azurite a CRC-64 of each block in JavaScript, which made staging in blocks
    cost Azurite twice the CPU of Put Blob (0.27 s against 0.12 s for 13 MB; 0.12 s with the MD5).
    """
    if len(buffers) == 1 and len(buffers[0]) <= block_bytes:
        blob.upload_blob(buffers[0], overwrite=True, max_concurrency=1, validate_content=True)
        return 1
    total = sum(len(buffer) for buffer in buffers)
    spans = block_spans(total, block_bytes)

    def stage(index: int) -> str:
        start, end = spans[index]
        block = staged_block_id(index)
        blob.stage_block(block, ByteSpan(buffers, start, end), length=end - start,  # type: ignore[arg-type]
                         validate_content=True)
        return block

    if len(spans) <= 1:
        blocks = [stage(index) for index in range(len(spans))]
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(spans)), thread_name_prefix="stage") as pool:
            blocks = list(pool.map(stage, range(len(spans))))
    blob.commit_block_list([BlobBlock(block_id=block) for block in blocks])
    return len(spans) + 1
