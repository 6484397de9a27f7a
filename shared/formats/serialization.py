"""Turn staged JSONL lines into destination files: JSONL or CSV, gzip, zstd or uncompressed (Parquet is
``parquet_part``; ``file_extension`` and ``content_type`` name all three formats).

Staged records are lines of compact JSON, kept as the exact bytes that were sent. JSONL output
moves those bytes untouched (no parsing); CSV output parses each record, flattens nested objects
into columns and writes RFC 4180 rows. Numbers stay exact: integers beyond 64 bits and floats
whose text a double would not reproduce are kept as the literal text that was sent.

Speed matters (the export is measured against plain gzip): work is done per chunk of lines
wherever it can be (one ``orjson.loads`` and one ``orjson.dumps`` check per chunk), CSV rows of a
shape already seen are written with C-level calls only (``RowShape``), and gzip runs in a helper
thread while the next chunk is encoded (``PartEncoder``).
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from shared.formats.csv_encoding import CsvEncoder
from shared.formats.zstd_frames import ZstdStream

Format = Literal["jsonl", "csv", "parquet"]
Compression = Literal["gzip", "zstd", "snappy", "none"]

_EXTENSIONS: dict[str, str] = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}
_SUFFIXES: dict[str, str] = {"gzip": ".gz", "zstd": ".zst"}
_CONTENT_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
                                  "parquet": "application/vnd.apache.parquet"}
_COMPRESSED_TYPES: dict[str, str] = {"gzip": "application/gzip", "zstd": "application/zstd"}


def file_extension(fmt: Format, compression: Compression) -> str:
    """The data file's extension without the leading dot: "jsonl", "jsonl.gz", "csv.zst", ...; "parquet" whatever
    its compression (a Parquet file compresses inside)."""
    base = _EXTENSIONS[fmt]
    return base if fmt == "parquet" else base + _SUFFIXES.get(compression, "")


def content_type(fmt: Format, compression: Compression = "none") -> str:
    """The blob's Content-Type: the compressed file's type for a gzip or zstd text file (so that it downloads as it
    is stored, never decoded on the way), else the format's."""
    if fmt != "parquet" and compression in _COMPRESSED_TYPES:
        return _COMPRESSED_TYPES[compression]
    return _CONTENT_TYPES[fmt]


def encode_jsonl(lines: Sequence[bytes]) -> bytes:
    """The JSONL text of staged lines, moved as they are: each line and a "\\n"."""
    if not lines:
        return b""
    return b"\n".join(lines) + b"\n"


class GzipStream:
    """One gzip member for one whole file, fed piece by piece (never the whole file in memory)."""

    __slots__ = ("_zlib",)

    def __init__(self, level: int = 6):
        _check_level(level)
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data)

    def finish(self) -> bytes:
        return self._zlib.flush()


class PassThrough:
    """The compressor interface for uncompressed files."""

    __slots__ = ()

    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


def _check_level(level: int) -> None:
    if not 0 <= level <= 9:
        raise ValueError(f"the gzip level must be 0 to 9, not {level}")


def new_compressor(compression: Compression, level: int = 6) -> GzipStream | ZstdStream | PassThrough:
    """The compressor of a JSONL or CSV file (`level` is gzip's; zstd has its own)."""
    if compression == "gzip":
        return GzipStream(level)
    if compression == "zstd":
        return ZstdStream()
    if compression == "none":
        return PassThrough()
    raise ValueError(f"unknown compression {compression!r} for a JSONL or CSV file: use 'gzip', 'zstd' or 'none'")


# ---------------------------------------------------------------------------------------------
# Streaming lines and rolling parts


def split_lines(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Complete lines, one list per downloaded chunk, from chunks cut anywhere.

    Lines end with "\\n" (a last line without one still counts); empty lines are dropped; no
    list is empty.
    """
    pieces: list[bytes] = []  # the unfinished line, possibly spread over several chunks
    for chunk in chunks:
        if b"\n" not in chunk:
            if chunk:
                pieces.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pieces:
            pieces.append(lines[0])
            lines[0] = b"".join(pieces)
            pieces = []
        rest = lines.pop()
        if rest:
            pieces.append(rest)
        if not all(lines):
            lines = list(filter(None, lines))
        del chunk  # neither is held while the next chunk downloads
        if lines:
            yield lines
        del lines
    if pieces:
        yield [b"".join(pieces)]


def split_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of ``split_lines``, as one block of bytes per downloaded chunk instead of a list.

    Each block is whole lines, each ending with "\\n" (a last line without one gets it), none
    empty. JSONL export moves staged lines as they are, so it works per chunk, never per line.
    """
    pieces: list[bytes] = []  # the unfinished line, possibly spread over several chunks
    for chunk in chunks:
        end = chunk.rfind(b"\n") + 1
        if not end:
            if chunk:
                pieces.append(chunk)
            continue
        block = chunk[:end]  # the chunk itself when it ends with a newline (no copy)
        if pieces:
            pieces.append(block)
            block, pieces = b"".join(pieces), []
        if end < len(chunk):
            pieces.append(chunk[end:])
        del chunk  # neither is held while the next chunk downloads
        if block := _without_empty_lines(block):
            yield block
        del block
    if pieces and (block := _without_empty_lines(b"".join(pieces) + b"\n")):
        yield block


_EMPTY_LINE = re.compile(rb"\n\n").search  # 2.5 times as fast as `b"\n\n" in block`


def _without_empty_lines(block: bytes) -> bytes:
    if block[:1] != b"\n" and not _EMPTY_LINE(block):
        return block
    return b"".join(line + b"\n" for line in block.split(b"\n") if line)


def cut_block(block: bytes, budget_bytes: int) -> int:
    """The ``take_until`` of a block: where the leading lines that fit in ``budget_bytes`` end.

    At least the first line, so a part always makes progress.
    """
    if len(block) <= budget_bytes:
        return len(block)
    return block.rfind(b"\n", 0, max(budget_bytes, 0)) + 1 or block.index(b"\n") + 1


def take_until(lines: Sequence[bytes], budget_bytes: int, *, scale: int = 1, extra_per_line: int = 0) -> int:
    """How many leading lines fit in ``budget_bytes``, each counting ``scale`` times its length plus a
    newline and ``extra_per_line`` (what a line becomes: itself for JSONL; see ``PartEncoder.lines_within``).

    At least 1 when ``lines`` is not empty, so a part always makes progress (passing the budget
    by less than that one line).
    """
    if not lines:
        return 0
    ends = list(accumulate(map(len, lines)))
    per_line = 1 + extra_per_line
    fitting = bisect_right(range(len(ends)), budget_bytes, key=lambda i: ends[i] * scale + (i + 1) * per_line)
    return max(fitting, 1)


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    data: bytes  # bytes ready to upload (compressed when the part is)
    records: int  # records encoded in this chunk
    raw_bytes: int  # uncompressed bytes encoded in this chunk (the CSV header included)


_BACKGROUND_BYTES = 64 * 1024  # smaller pieces cost more to hand over than they take to compress
# Shared by every part: a part has at most one piece in flight, so its order holds; a thread each would cost a
# thread start per part, as much as compressing a small file.
_COMPRESSORS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gzip")


class PartEncoder:
    """Encodes one part file: the CSV header first, then chunks of staged lines, then the flush.

    The caller rolls to a new part by checking ``raw_bytes`` between chunks (``take_until`` cuts a
    chunk at a line boundary). The ``data`` of the chunks returned by ``feed`` and ``close``, in
    order, is the file.

    A large chunk after the first is gzipped in a helper thread while the caller encodes the next
    one (zlib lets go of the GIL while it deflates), so ``feed`` returns the compressed bytes ready
    so far, which may be those of earlier chunks; ``records`` and ``raw_bytes`` always count this
    call's lines. The first is compressed at once: most files are one chunk, closed right after it,
    and nothing would overlap with its compression.
    """

    def __init__(self, fmt: Format, compression: Compression, columns: Sequence[str] | None = None, level: int = 6):
        self._compressor = new_compressor(compression, level)
        self._background = compression == "gzip"
        self._chunks = 0  # fed so far
        self._in_flight: Future[bytes] | None = None
        self._ready: list[bytes] = []  # compressed bytes not handed out yet
        self._csv: CsvEncoder | None = None
        self._csv_row_floor = 0
        self._records = 0
        self._raw_bytes = 0
        self._unreported_raw = 0  # the CSV header's, reported with the first chunk
        self._closed = False
        if fmt == "csv":
            if columns is None:
                raise ValueError("a CSV part needs its columns")
            self._csv = CsvEncoder(columns)
            self._csv_row_floor = len(columns) + 2  # the commas and line end of one row, a bound with quotes
            header = self._csv.header()
            self._ready.append(self._compressor.compress(header))
            self._raw_bytes = self._unreported_raw = len(header)
        elif fmt != "jsonl":
            raise ValueError(f"unknown format {fmt!r}: use 'jsonl' or 'csv'")

    @property
    def records(self) -> int:
        return self._records

    @property
    def raw_bytes(self) -> int:
        return self._raw_bytes

    def lines_within(self, lines: Sequence[bytes], budget_bytes: int) -> int:
        """How many leading staged ``lines`` to feed so that this part's output grows by at most
        ``budget_bytes`` (at least 1, so a part always makes progress).

        JSONL output is the staged lines: exact. A CSV row is bounded instead: every row writes every column
        (a comma each, even when empty), and a value's cell is at most twice its JSON text (quotes doubled
        inside a quoted cell). A part of a wide CSV is sized by what it writes, not by the staged lines:
        10,000 columns over rows of 100 staged bytes write 100 times the input.
        """
        if self._csv is None:
            return take_until(lines, budget_bytes)
        return take_until(lines, budget_bytes, scale=2, extra_per_line=self._csv_row_floor)

    def feed(self, lines: Sequence[bytes]) -> EncodedChunk:
        if self._closed:
            raise RuntimeError("the part is closed")
        if self._csv is None:
            text, count = encode_jsonl(lines), len(lines)
        else:
            text, count = self._csv.encode(lines)
        self._records += count
        self._raw_bytes += len(text)
        self._compress(text)
        return self._hand_out(count, len(text))

    def feed_block(self, block: bytes, records: int) -> EncodedChunk:
        """JSONL only: ``records`` whole staged lines in one block (``split_blocks``), moved as they are."""
        if self._closed:
            raise RuntimeError("the part is closed")
        if self._csv is not None:
            raise ValueError("a CSV part is fed lines, not blocks")
        self._records += records
        self._raw_bytes += len(block)
        self._compress(block)
        return self._hand_out(records, len(block))

    def close(self) -> EncodedChunk:
        if self._closed:
            raise RuntimeError("the part is closed")
        self._closed = True
        self._collect()
        self._ready.append(self._compressor.finish())
        return self._hand_out(0, 0)

    def _compress(self, text: bytes) -> None:
        self._collect()  # one piece at a time keeps the order and the memory bounded
        self._chunks += 1
        if self._background and self._chunks > 1 and len(text) >= _BACKGROUND_BYTES:
            self._in_flight = _COMPRESSORS.submit(self._compressor.compress, text)
        else:
            self._ready.append(self._compressor.compress(text))

    def _collect(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._ready.append(future.result())

    def _hand_out(self, records: int, raw_bytes: int) -> EncodedChunk:
        data = b"".join(self._ready)
        self._ready.clear()
        raw_bytes, self._unreported_raw = raw_bytes + self._unreported_raw, 0
        return EncodedChunk(data, records, raw_bytes)

