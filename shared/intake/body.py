"""A posted body, decoded: what its media type says it holds, and its bytes read and inflated within the size limit."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Literal

from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

BodyKind = Literal["ndjson", "json"]
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                "application/jsonlines"}
JSON_TYPES = {"application/json"}


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


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytearray:
    """Read a request body, refusing it as soon as it passes `limit` bytes.

    The chunks go straight into one bytearray: joining a list of them would hold the body twice at the end.
    (A bytearray grows by about an eighth at a time, and a large one grows in place: no second copy either.)
    """
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)")
        body += chunk
    return body


def decode_body(raw: bytes | bytearray, content_encoding: str | None, limit: int) -> bytes | bytearray:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in {"identity", ""}:
        return raw
    if encoding not in {"gzip", "x-gzip"}:
        raise UnsupportedMediaType(f"unsupported Content-Encoding '{encoding}': send gzip or no encoding")
    return gunzip_limited(raw, limit)


def gunzip_limited(raw: bytes | bytearray, limit: int) -> bytearray:
    """Inflate gzip, stopping at `limit` bytes of output (a gzip bomb never inflates past it).

    Several gzip members in a row are inflated one after the other, in a loop: a body of thousands of
    tiny members must not recurse thousands of levels deep. The output grows in one bytearray (a list of
    pieces joined at the end would hold the inflated body twice).
    """
    out = bytearray()
    size = 0
    data: bytes | bytearray = raw
    try:
        while True:  # one gzip member per round
            inflater = zlib.decompressobj(wbits=31)
            while not inflater.eof:
                piece = inflater.decompress(data, 1024 * 1024)
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the gzip body inflates to more than the limit of {limit} bytes (MAX_REQUEST_BYTES)"
                    )
                out += piece
                data = inflater.unconsumed_tail
                if not inflater.eof and not data and not piece:
                    raise BadRequest("the gzip body is truncated")
            data = inflater.unused_data
            if not data.strip(b"\0"):
                break
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid gzip: {exc}") from None
    return out
