"""A body fed in pieces, as it arrives over HTTP, is read exactly as the same body whole: the same staged
lines, the same problems, the same gzip errors (shared.intake.accept.BodyIntake, records.NdjsonReader,
body.GunzipStream)."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from shared.errors import AppError, BadRequest, PayloadTooLarge
from shared.intake.accept import BodyIntake, IntakeRequest
from shared.intake.body import GunzipStream
from shared.intake.records import NdjsonReader, ParsedBatch, RecordsRejected, parse_batch

BODY = (b'\xef\xbb\xbf{"event":"a","ts":1700000000}\r\n\n  {"event":"b","ts":1700003600,"s":"\\u00e9"}\n'
        b'{"event":"c","ts":1700000001}')
BAD = b'{"event":"a","ts":1700000000}\n{"ts":1}\nnot json\n{"event":"d","ts":1700000000}\n'


def pieces(body: bytes, cut: int) -> list[bytes]:
    return [body[:cut], body[cut:]]


def staged(batch: ParsedBatch) -> dict[str, list[bytes]]:
    return {key: part.lines for key, part in batch.partitions.items()}


@pytest.mark.parametrize("cut", range(len(BODY) + 1))
def test_ndjson_cut_anywhere_is_staged_as_the_whole_body(cut: int) -> None:
    reader = NdjsonReader("events")
    for piece in pieces(BODY, cut):
        reader.feed(piece)
    assert staged(reader.finish()) == staged(parse_batch(BODY, "ndjson", "events"))


@pytest.mark.parametrize("cut", range(len(BAD) + 1))
def test_ndjson_problems_are_the_same_wherever_the_body_is_cut(cut: int) -> None:
    with pytest.raises(RecordsRejected) as whole:
        parse_batch(BAD, "ndjson", "events")
    reader = NdjsonReader("events")
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
