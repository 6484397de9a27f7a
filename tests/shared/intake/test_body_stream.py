"""A body fed in pieces, as it arrives over HTTP, is read exactly as the same body whole: the same staged
lines, the same problems, the same gzip errors (shared.intake.accept.BodyIntake, records.BodyReader,
body.GunzipStream)."""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest

from shared.errors import AppError, BadRequest, PayloadTooLarge
from shared.intake.accept import BodyIntake, IntakeRequest
from shared.intake.body import BodyKind, GunzipStream
from shared.intake.records import BodyReader, ParsedBatch, RecordsRejected, parse_batch

BODY = (b'\xef\xbb\xbf{"event":"a","ts":1700000000}\r\n\n  {"event":"b","ts":1700003600,"s":"\\u00e9"}\n'
        b'{"event":"c","ts":1700000001}')
BAD = b'{"event":"a","ts":1700000000}\n{"ts":1}\nnot json\n{"event":"d","ts":1700000000}\n'


MIB = 1024 * 1024


def pieces(body: bytes, cut: int) -> list[bytes]:
    return [body[:cut], body[cut:]]


def staged(batch: ParsedBatch) -> dict[str, list[bytes]]:
    return {key: part.lines for key, part in batch.partitions.items()}


@pytest.mark.parametrize("cut", range(len(BODY) + 1))
def test_ndjson_cut_anywhere_is_staged_as_the_whole_body(cut: int) -> None:
    reader = BodyReader("ndjson", "events")
    for piece in pieces(BODY, cut):
        reader.feed(piece)
    assert staged(reader.finish()) == staged(parse_batch(BODY, "ndjson", "events"))


@pytest.mark.parametrize("cut", range(len(BAD) + 1))
def test_ndjson_problems_are_the_same_wherever_the_body_is_cut(cut: int) -> None:
    with pytest.raises(RecordsRejected) as whole:
        parse_batch(BAD, "ndjson", "events")
    reader = BodyReader("ndjson", "events")
    for piece in pieces(BAD, cut):
        reader.feed(piece)
    with pytest.raises(RecordsRejected) as fed:
        reader.finish()
    assert fed.value.message == whole.value.message and fed.value.problems == whole.value.problems


def members() -> bytes:
    return gzip.compress(BODY[:40]) + gzip.compress(BODY[40:]) + b"\0" * 5


@pytest.mark.parametrize("cut", range(0, len(members()) + 1, 3))
def test_gzip_members_cut_anywhere_inflate_to_the_body(cut: int) -> None:
    stream = GunzipStream(10_000)
    out = b"".join(bytes(stream.feed(piece)) for piece in pieces(members(), cut))
    stream.finish()
    assert out == BODY


@pytest.mark.parametrize(("body", "error", "words"), [
    (gzip.compress(BODY)[:-9], BadRequest, "truncated"),
    (b"", BadRequest, "truncated"),
    (BODY, BadRequest, "not valid gzip"),
    (gzip.compress(BODY) + b"\0\0x", BadRequest, "not valid gzip"),
    (gzip.compress(b" " * 20_000), PayloadTooLarge, "inflates to more than the limit of 10000 bytes"),
])
def test_gzip_errors_are_those_of_the_whole_body(body: bytes, error: type[AppError], words: str) -> None:
    stream = GunzipStream(10_000)
    with pytest.raises(error, match=words):
        for piece in pieces(body, len(body) // 2):
            stream.feed(piece)
        stream.finish()


def test_body_intake_hashes_the_inflated_body_and_checks_headers_before_any_body() -> None:
    request = IntakeRequest("acme", "events", "application/x-ndjson", "gzip", None)
    intake = BodyIntake(request, max_bytes=10_000)
    compressed = gzip.compress(BODY)
    intake.feed(compressed[:10])
    intake.feed(compressed[10:])
    assert intake.finish().record_count == 3
    assert intake.body_sha256 == hashlib.sha256(BODY).hexdigest()
    with pytest.raises(AppError, match="Content-Encoding"):
        BodyIntake(IntakeRequest("acme", "events", "application/x-ndjson", "br", None), max_bytes=10_000)


def test_a_large_json_body_of_another_shape_is_refused_where_its_shape_breaks_without_a_whole_parse() -> None:
    element = b'{"event":"a","ts":1700000000,"p":[' + b"[]," * 200 + b"[]]}"
    body = b"[\n" + b",\n".join([element] * 8000) + b',\n"not an object"]'  # about 5 MiB: past the whole parse
    with pytest.raises(RecordsRejected) as refused:
        parse_batch(body, "json", "events")
    assert refused.value.message == ("the JSON body must be an array of records (objects) separated by commas; "
                                     "on line 8002, column 1 it holds something else")
    assert refused.value.problems[0].line == 8002


# A JSON array is read as it arrives too (issue 11, intake memory): these bodies, cut anywhere or fed a byte at
# a time, give what the whole body gives. Small bodies (under 4 MiB) are kept whole; the large ones below are
# not, and their problems still say where they are.
ARRAYS = [
    b'\xef\xbb\xbf[{"event":"a","ts":1700000000},{"event":"b","ts":1700003600,"s":"\\u00e9 ]["}]',
    b'[\r\n  {"event": "a", "ts": 1700000000, "p": {"q": [1, {"r": "x\\"]{"}]}},\r\n  {"event": "b", "ts": 1}\n]\n',
    b'[{"event":"a","ts":1700000000,"big":123456789012345678901234567890}]',
    b"", b"  \n", b"[]", b"[ ]  ", b'{"event":"a","ts":1700000000}', b'{"records":[{"event":"a"}]}', b"[1,2]",
    b'[{"event":"a","ts":1700000000}, 5]', b'[{"event":"a","ts":1700000000}', b'[{"event":"a","ts":1700000000}] x',
    b'[{"event":"a","ts":1700000000}}', b'[{"event":"a","ts":1700000000} {"event":"b","ts":1}]',
    b'[{"event": tru, "ts": 1}]', b'[{"event":"\xc3\xa9","ts":1700000000},\n {"bad": }]',
    b'[{"event":"a\xff","ts":1700000000}]', b'[{"event":"a","ts":"not a time"},{"ts":1}]', b"[[1]]", b'["x]"]',
    b'[{"event":"a","ts":1700000000,"s":"unterminated]',
]


def outcome(read: Callable[..., ParsedBatch], *args: Any) -> object:
    try:
        batch = read(*args)
    except RecordsRejected as exc:
        return exc.message, exc.problems
    return batch.record_count, staged(batch)


def fed(body: bytes, sizes: Iterable[int], kind: BodyKind = "json") -> ParsedBatch:
    reader = BodyReader(kind, "events", max_containers=50)
    at = 0
    for size in sizes:
        reader.feed(body[at : at + size])
        at += size
    reader.feed(body[at:])
    return reader.finish()


@pytest.mark.parametrize("body", ARRAYS)
def test_a_json_array_cut_anywhere_or_fed_a_byte_at_a_time_reads_as_the_whole_body(body: bytes) -> None:
    whole = outcome(lambda: parse_batch(body, "json", "events", max_containers=50))
    for cut in range(len(body) + 1):
        assert outcome(fed, body, [cut]) == whole, cut
    assert outcome(fed, body, [1] * len(body)) == whole


def large_array(last: bytes, *, pretty: bool) -> bytes:
    """About 5 MiB of events (past the 4 MiB kept whole), then ``last`` as the final element."""
    element = b'{"event":"caf\xc3\xa9","ts":1700000000,"p":{"s":"\xe2\x82\xac ][ \\" }{","n":[1,2,3]}}'
    gap = b",\n  " if pretty else b","
    return b"[" + gap.join([element] * 70_000 + [last]) + b"]"


@pytest.mark.parametrize("pretty", [True, False], ids=["pretty", "one-line"])
@pytest.mark.parametrize("piece", [MIB, 65_537, 4093])
def test_a_large_array_fed_in_pieces_places_a_malformed_element_in_the_body(pretty: bool, piece: int) -> None:
    body = large_array(b'{"event":"\xc3\xa9","ts":1700000000,"x": nope}', pretty=pretty)
    with pytest.raises(orjson.JSONDecodeError) as parsed:
        orjson.loads(body)  # orjson's own place for the error: line, and column in characters
    with pytest.raises(RecordsRejected) as refused:
        fed(body, [piece] * (len(body) // piece))
    line, column = parsed.value.lineno, parsed.value.colno
    assert refused.value.message.startswith(f"malformed JSON on line {line}, column {column}: ")
    assert refused.value.problems[0].line == line


@pytest.mark.parametrize("piece", [MIB, 4093])
def test_a_large_array_fed_in_pieces_is_refused_where_its_shape_breaks(piece: int) -> None:
    body = large_array(b'{"event":"a","ts":1700000000}] trailing', pretty=True)
    with pytest.raises(RecordsRejected) as refused:
        fed(body, [piece] * (len(body) // piece))
    assert refused.value.message == ("the JSON body must be an array of records (objects) separated by commas; "
                                     "on line 70001, column 34 it holds something else")


def test_a_large_array_fed_in_pieces_stages_every_element_exactly_once() -> None:
    body = large_array(b'{"event":"last","ts":1700003600}', pretty=False)
    batch = fed(body, [65_537] * (len(body) // 65_537))
    assert batch.record_count == 70_001
    assert sum(part.records for part in batch.partitions.values()) == 70_001
    assert staged(batch) == staged(parse_batch(body, "json", "events"))


def test_a_json_array_body_is_not_held_whole_beside_its_staged_text() -> None:
    """Before, BodyIntake gathered a JSON array whole and read it at ``finish``: the body and its staged text were
    held together (2.0x the body). Now a body's first 4 MiB are kept whole (a small body of the wrong shape is
    parsed whole to say what is wrong), then only the element being read, with the 1 MiB piece fed."""
    element = b'{"event":"a","ts":1700000000,"text":"' + b"x" * 700 + b'"}'  # few objects: tracemalloc is slow
    body = b"[" + b",".join([element] * 20_000) + b"]"
    intake = BodyIntake(IntakeRequest("acme", "events", "application/json", None, None), max_bytes=len(body))
    tracemalloc.start()
    try:
        for at in range(0, len(body), MIB):
            intake.feed(body[at : at + MIB])
        batch = intake.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert batch.record_count == 20_000 and len(body) > 13 * MIB
    assert peak - batch.total_bytes < 8 * MIB, (peak, batch.total_bytes, len(body))
