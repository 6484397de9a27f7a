"""A posted body, decoded: what its media type says it holds, and its bytes read and inflated within the size limit."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, Literal

from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

BodyKind = Literal["ndjson", "json"]
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                "application/jsonlines"}
JSON_TYPES = {"application/json"}
_HEAD_BYTES = 16


def body_kind(content_type: str | None) -> BodyKind:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        return "ndjson"
    if media in JSON_TYPES:
        return "json"
    raise UnsupportedMediaType(
        f"unsupported Content-Type '{media or '(none)'}': send application/x-ndjson (one JSON object per line) "
        "or application/json (an array of objects)"
    )


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)")


def is_gzip(content_encoding: str | None) -> bool:
    """Whether the body is gzip (False: as it is); any other Content-Encoding is refused."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in {"identity", ""}:
        return False
    if encoding not in {"gzip", "x-gzip"}:
        raise UnsupportedMediaType(f"unsupported Content-Encoding '{encoding}': send gzip or no encoding")
    return True


class GunzipStream:
    """Inflate a gzip body as it arrives, stopping at `limit` bytes of output (a gzip bomb never inflates past
    it): ``feed`` returns what each piece inflates to, ``finish`` checks that the body ended with a whole member.

    Several gzip members in a row are inflated one after the other, in a loop: a body of thousands of tiny
    members must not recurse thousands of levels deep. NUL padding after a member is allowed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._inflater: Any = zlib.decompressobj(wbits=31)  # the member being inflated; None between members
        self._between = b""  # NUL bytes after a member so far: padding, unless another member follows
        self._members = 0
        self._head = b""  # the body's first bytes: if they are not gzip, what they look like says why

    def feed(self, data: bytes | bytearray) -> bytearray:
        """What ``data`` inflates to, in one piece."""
        return bytearray().join(self.inflate(data))

    def inflate(self, data: bytes | bytearray) -> Iterator[bytes]:
        """What ``data`` inflates to, in pieces of at most 1 MiB: a caller that takes each piece in turn never
        holds all that a piece of the body inflates to (8 MiB for 1 MiB at level 1: issue 11, intake memory)."""
        rest = bytes(data)
        if len(self._head) < _HEAD_BYTES:
            self._head += rest[: _HEAD_BYTES - len(self._head)]
        try:
            while rest:
                if self._inflater is None:
                    rest = self._between + rest
                    if not rest.strip(b"\0"):
                        self._between = rest
                        break
                    self._between = b""
                    self._inflater = zlib.decompressobj(wbits=31)
                piece = self._inflater.decompress(rest, 1024 * 1024)
                self.size += len(piece)
                if self.size > self.limit:
                    raise PayloadTooLarge(
                        f"the gzip body inflates to more than the limit of {self.limit} bytes (MAX_REQUEST_BYTES)"
                    )
                yield piece
                if self._inflater.eof:
                    rest = self._inflater.unused_data
                    self._inflater = None
                    self._members += 1
                else:
                    rest = self._inflater.unconsumed_tail
        except zlib.error as exc:
            if self._members == 0 and self._head.lstrip()[:1] in {b"{", b"["}:
                raise BadRequest(
                    "the body is not valid gzip: it starts like uncompressed JSON, but was sent with "
                    "'Content-Encoding: gzip'; send it without that header, or compress it"
                ) from None
            raise BadRequest(f"the body is not valid gzip: {exc}") from None

    def finish(self) -> None:
        if self._inflater is not None:
            raise BadRequest("the gzip body is truncated")
