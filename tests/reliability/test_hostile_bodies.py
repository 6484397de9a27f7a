"""Hostile request bodies through the real HTTP API (uvicorn) against Azurite.

Each body is either accepted (202, and the records land byte-exact) or refused with a clear 4xx JSON
error; a refused request leaves nothing in control storage (no staged/, states/ or index/ blobs).
The test settings cap request bodies at 2 MiB (MAX_REQUEST_BYTES), compressed and inflated alike.
"""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from typing import Any

import httpx
import orjson
import psutil
import pytest
from azure.storage.blob import ContainerClient

from shared.services import Services
from tests.reliability.hostile_support import staged_or_state_blobs
from tests.shared.export_helpers import make_destination, read_blob
from tests.support.azurite import Azurite

EVENT = b'{"event":"e","ts":1700000000'
LIMIT = 2 * 1024 * 1024  # the `settings` fixture's MAX_REQUEST_BYTES


def gzip_bomb(inflated: int, chunk: int = 1 << 20) -> bytes:
    """One valid gzip member that inflates to ``inflated`` zero bytes (about 1000:1), built in a blink:
    after a full flush deflate's output for the next chunk of zeros is always the same bytes."""
    zeros = bytes(chunk)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    count = inflated // chunk
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * count + end + struct.pack("<II", crc, (count * chunk) & 0xFFFFFFFF)


def line(extra: bytes = b"") -> bytes:
    return EVENT + extra + b"}"


def gz_members(body: bytes, members: int) -> bytes:
    """``body`` split into ``members`` separate gzip members, one after the other."""
    size = max(1, len(body) // members)
    return b"".join(gzip.compress(body[i : i + size]) for i in range(0, len(body), size))


NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
GZIP = {"content-encoding": "gzip"}

# label, body, headers, expected status, words the error message must hold
REFUSED: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("gzip bomb: 1 GiB of zeros in 1 MB", gzip_bomb(1 << 30), {**NDJSON, **GZIP}, 413, "inflates to more than"),
    ("gzip bomb hidden after a valid member", gzip.compress(line() + b"\n") + gzip_bomb(64 << 20),
     {**NDJSON, **GZIP}, 413, "inflates to more than"),
    ("many gzip members adding up past the limit", gzip.compress(b" " * (LIMIT // 2)) * 3,
     {**NDJSON, **GZIP}, 413, "inflates to more than"),
    ("raw body over the limit", b" " * (LIMIT + 1), NDJSON, 413, "larger than the limit"),
    ("gzip inside gzip", gzip.compress(gzip.compress(line())), {**NDJSON, **GZIP}, 400, "gzip-compressed data"),
    ("truncated gzip", gzip.compress(line() * 100)[:-9], {**NDJSON, **GZIP}, 400, "truncated"),
    ("not gzip at all", line(), {**NDJSON, **GZIP}, 400, "not valid gzip"),
    ("unknown Content-Encoding", line(), {**NDJSON, "content-encoding": "br"}, 415, "Content-Encoding"),
    ("no Content-Type", line(), {}, 415, "Content-Type"),
    ("a Content-Type of text/plain", line(), {"content-type": "text/plain"}, 415, "Content-Type"),
    ("empty body", b"", NDJSON, 400, "no records"),
    ("only blank lines", b"\n\r\n   \n" * 1000, NDJSON, 400, "no records"),
    ("arrays nested 10,000 deep", EVENT + b',"p":' + b"[" * 10_000 + b"]" * 10_000 + b"}", NDJSON, 400,
     "nested more than 1024 levels"),
    ("objects nested 10,000 deep in a JSON array", b"[" + EVENT + b',"p":' + b'{"a":' * 10_000 + b"1" +
     b"}" * 10_000 + b"}]", JSON, 400, "nested more than 1024 levels"),
    ("1e400", line(b',"n":1e400'), NDJSON, 400, "too large for a 64-bit float"),
    ("10**400 as an integer literal", line(b',"n":' + b"1" + b"0" * 400), NDJSON, 400, "too large for a 64-bit float"),
    ("event time 1e400", b'{"event":"e","ts":1e400}', NDJSON, 400, "too large for a 64-bit float"),
    ("event time 10**30", b'{"event":"e","ts":1' + b"0" * 30 + b"}", NDJSON, 400, "too large for an epoch time"),
    ("NaN", line(b',"n":NaN'), NDJSON, 400, "NaN and Infinity are not JSON numbers"),
    ("invalid UTF-8 (0xff)", line(b',"s":"\xff"'), NDJSON, 400, "not valid UTF-8"),
    ("overlong UTF-8 for '/'", line(b',"s":"\xc0\xaf"'), NDJSON, 400, "not valid UTF-8"),
    ("a raw UTF-16 surrogate (CESU-8)", line(b',"s":"\xed\xa0\x80"'), NDJSON, 400, "not valid UTF-8"),
    ("Latin-1 text", line(b',"s":"caf\xe9"'), JSON, 400, "not valid UTF-8"),
    ("UTF-16 body", ("[" + line().decode() + "]").encode("utf-16"), JSON, 400, "malformed JSON"),
    ("an escaped lone surrogate", line(b',"s":"\\ud800"'), NDJSON, 400, "lone UTF-16 surrogate"),
    ("an escaped lone surrogate in a key", line(b',"\\udc00":1'), JSON, 400, "lone UTF-16 surrogate"),
    ("a raw NUL inside a string", line(b',"s":"a\x00b"'), NDJSON, 400, "raw control character"),
    ("a raw NUL between records", line() + b"\x00\n" + line(), NDJSON, 400, "line 1"),
    ("a NUL-only body", b"\x00" * 1000, NDJSON, 400, "malformed JSON"),
    ("a byte order mark on line 2", line() + b"\n\xef\xbb\xbf" + line(), NDJSON, 400, "byte order mark"),
    ("two byte order marks", b"\xef\xbb\xbf\xef\xbb\xbf" + line(), NDJSON, 400, "byte order mark"),
    ("a JSON object instead of an array", line(), JSON, 400, "must be an array"),
    ("a JSON array of strings", b'["a","b"]', JSON, 400, "must be a JSON object"),
    ("100,000 invalid records", b"{}\n" * 100_000, NDJSON, 400, "checking stopped"),
]


@pytest.fixture
def dest(api: httpx.Client, azurite: Azurite, fresh_container: ContainerClient) -> str:
    return make_destination(api, azurite, fresh_container, dest_id="hostile", compression="none")


def post(api: httpx.Client, dest: str, body: bytes, headers: dict[str, str], record_type: str = "events",
         **extra: str | bytes) -> httpx.Response:
    sent: dict[str, Any] = {**headers, **extra}
    return api.post(f"/api/destinations/{dest}/batches", params={"type": record_type}, content=body, headers=sent)


def assert_clear_error(response: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    text = error["message"] + " " + " ".join(str(d.get("message", "")) for d in error["details"])
    assert words in text, text[:500]
    return dict(error)


@pytest.mark.parametrize(("label", "body", "headers", "status", "words"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_body_is_refused_clearly_and_stages_nothing(
    api: httpx.Client, services: Services, dest: str, label: str, body: bytes, headers: dict[str, str],
    status: int, words: str,
) -> None:
    process = psutil.Process()
    rss_before = process.memory_info().rss
    started = time.monotonic()
    response = post(api, dest, body, headers)
    assert_clear_error(response, status, words)
    assert time.monotonic() - started < 10
    # A bomb is stopped at the limit: the server (this process) never held the inflated gigabyte.
    assert process.memory_info().rss - rss_before < 256 * 1024 * 1024
    assert staged_or_state_blobs(services) == []
    assert api.get("/api/batches").json()["batches"] == []


def test_invalid_records_are_named_by_line_and_field(api: httpx.Client, services: Services, dest: str) -> None:
    body = b"\n".join([line(), b'{"event":"e","ts":"yesterday"}', line(), b'{"ts":1700000000}', b"[1]"])
    error = assert_clear_error(post(api, dest, body, NDJSON), 400, "3 of 5 records are invalid")
    assert [(d["line"], d["field"]) for d in error["details"]] == [(2, "ts"), (4, None), (5, None)]
    assert "line 2: event time 'ts' = \"yesterday\" is not a valid date-time" in error["details"][0]["message"]
    assert staged_or_state_blobs(services) == []


# --- Accepted as they are, and landed byte-exact -------------------------------------------------------------------

ONE_MB = b"x" * (1024 * 1024)
ACCEPTED: list[tuple[str, bytes, dict[str, str], int]] = [
    ("a 1 MiB string property (the limit is 2 MiB)", line(b',"s":"' + ONE_MB + b'"'), NDJSON, 1),
    ("an escaped NUL in a value and a key", line(b',"s":"a\\u0000b","\\u0000":0'), NDJSON, 1),
    ("a byte order mark at the start (NDJSON)", b"\xef\xbb\xbf" + line() + b"\n" + line(), NDJSON, 2),
    ("a byte order mark at the start (JSON)", b"\xef\xbb\xbf[" + line() + b"," + line() + b"]", JSON, 2),
    ("CRLF line ends", line() + b"\r\n" + line() + b"\r\n", NDJSON, 2),
    ("CRLF inside a pretty-printed array", b"[\r\n  " + line() + b",\r\n  " + line() + b"\r\n]\r\n", JSON, 2),
    ("blank lines and trailing spaces", b"\n\n  " + line() + b"   \n\n" + line() + b"\t\n\n", NDJSON, 2),
    ("3,000 gzip members of one line each", gz_members((line() + b"\n") * 3000, 3000), {**NDJSON, **GZIP}, 3000),
    ("integers beyond 64 bits, 1e-400, 5e-324", line(b',"big":123456789012345678901234567890,"tiny":1e-400,'
                                                     b'"sub":5e-324,"neg":-0'), NDJSON, 1),
    ("unicode keys, dots, empty keys, emoji", line('," ":1,"":2,"a.b":{"":3},"日本":"😀","\\u2028":4'.encode()),
     NDJSON, 1),
    ("a JSON array nested 1,000 deep", line(b',"p":' + b"[" * 1000 + b"]" * 1000), NDJSON, 1),
]


@pytest.mark.parametrize(("label", "body", "headers", "records"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_unusual_but_valid_body_is_accepted_and_lands_exactly(
    api: httpx.Client, services: Services, dest: str, fresh_container: ContainerClient, label: str, body: bytes,
    headers: dict[str, str], records: int,
) -> None:
    response = post(api, dest, body, headers)
    assert response.status_code == 202, response.text[:500]
    assert response.json()["records"] == records
    summary = api.post("/api/exports/run").json()
    assert summary["landed"] == 1, summary
    names = [b.name for b in fresh_container.list_blobs() if "/_manifests/" not in b.name]
    landed = b"".join(read_blob(fresh_container, name) for name in names)
    raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    if headers.get("content-type") == "application/x-ndjson":
        # Each record lands as the very bytes that were sent (BOM and line ends aside).
        sent = [text.strip() for text in raw.removeprefix(b"\xef\xbb\xbf").split(b"\n") if text.strip()]
        assert landed.splitlines() == sent
    else:
        assert [orjson.loads(text) for text in landed.splitlines()] == orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))


def test_a_body_just_over_the_limit_with_a_1_mib_string_is_refused_and_one_under_is_not(
    api: httpx.Client, services: Services, dest: str
) -> None:
    """The 1 MiB string decision, at the edge: the limit counts bytes, whatever they hold."""
    base = line(b',"s":""')
    room = LIMIT - len(base)
    over = line(b',"s":"' + b"x" * (room + 1) + b'"')
    assert_clear_error(post(api, dest, over, NDJSON), 413, "larger than the limit")
    assert staged_or_state_blobs(services) == []
    under = line(b',"s":"' + b"x" * room + b'"')
    assert len(under) == LIMIT
    assert post(api, dest, under, NDJSON).status_code == 202
    inflated_over = gzip.compress(over)
    assert_clear_error(post(api, dest, inflated_over, {**NDJSON, **GZIP}), 413, "inflates to more than")


@pytest.mark.parametrize(
    ("record_type", "key", "status", "words"),
    [
        ("../events", None, 422, "'type' must be"),
        ("events\u0000", None, 422, "'type' must be"),
        ("", None, 422, "'type' must be"),
        ("events", "k" * 201, 400, "Idempotency-Key"),
        ("events", b"a\xa0b", 400, "Idempotency-Key"),  # a no-break space: not printable
    ],
)
def test_hostile_query_and_headers_are_refused(
    api: httpx.Client, services: Services, dest: str, record_type: str, key: str | bytes | None, status: int,
    words: str,
) -> None:
    extra = {"idempotency-key": key} if key is not None else {}
    assert_clear_error(post(api, dest, line(), NDJSON, record_type, **extra), status, words)
    assert staged_or_state_blobs(services) == []


def test_a_batch_for_a_destination_that_does_not_exist_stages_nothing(api: httpx.Client, services: Services) -> None:
    assert_clear_error(post(api, "nobody-here", line(), NDJSON), 404, "does not exist")
    assert staged_or_state_blobs(services) == []
