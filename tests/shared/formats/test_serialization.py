"""Serialization: what a reader of the destination files gets back, exactly."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.formats.csv_cells import flatten_record
from shared.formats.csv_encoding import CsvEncoder
from shared.formats.exact_json import JsonNumber, RecordError, parse_exact
from shared.formats.serialization import (
    EncodedChunk,
    GzipStream,
    PartEncoder,
    PassThrough,
    content_type,
    encode_jsonl,
    file_extension,
    new_compressor,
    split_lines,
    take_until,
)

# Staged lines as a platform sends them: compact JSON, exact original text.
LINES: list[bytes] = [
    b'{"event":"purchase","ts":1700000000123,"props":{"amount":19.99,"currency":"EUR","items":[1,2,3]}}',
    b'{"event":"caf\xc3\xa9 \xe2\x98\x95","user":{"id":"u-1","traits":{"name":"Zo\xc3\xab, \\"Z\\"","vip":true}}}',
    b'{"event":"big","n":1208925819614629174706176,"neg":-1208925819614629174706176,"f":1.50,"e":1e400}',
    b'{"event":"deep","a":{"b":{"c":{"d":{"e":{"f":{"g":"bottom"}}}}}}}',
    b'{"event":"empty","props":{},"list":[],"none":null,"no":false}',
    b'{"event":" spaced ","text":"line1\\nline2\\r\\nline3","comma":"a,b","quote":"say \\"hi\\""}',
    b'{"event":"mixed","list":[{"k":12345678901234567890123},1.10,"x",null],"emoji":"\xf0\x9f\x98\x80"}',
    b"{}",
]
RECORDS = [parse_exact(line) for line in LINES]
COLUMNS = sorted({column for record in RECORDS for column in flatten_record(record)})


def gunzip_single_member(data: bytes) -> bytes:
    """Decompress, failing unless ``data`` is exactly one gzip member."""
    inflater = zlib.decompressobj(wbits=31)
    text = inflater.decompress(data) + inflater.flush()
    assert inflater.eof
    assert inflater.unused_data == b""
    assert gzip.decompress(data) == text
    return text


def read_csv(text: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.decode("utf-8"), newline="")))


def csv_rows_as_dicts(text: bytes) -> tuple[list[str], list[dict[str, str]]]:
    header, *rows = read_csv(text)
    return header, [dict(zip(header, row, strict=True)) for row in rows]


def expected_cells(record: dict[str, Any], columns: Sequence[str]) -> dict[str, str]:
    cells = flatten_record(record)
    return {column: cells.get(column, "") for column in columns}


def csv_module_text(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """What the stdlib csv module writes for the flattened records: the encoder must match it byte for byte."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    for record in records:
        cells = flatten_record(record)
        writer.writerow([cells.get(column, "") for column in columns])
    return buffer.getvalue().encode()


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("fmt", "compression", "extension"),
    [("jsonl", "gzip", "jsonl.gz"), ("jsonl", "none", "jsonl"), ("csv", "gzip", "csv.gz"), ("csv", "none", "csv"),
     ("jsonl", "zstd", "jsonl.zst"), ("csv", "zstd", "csv.zst"), ("parquet", "zstd", "parquet"),
     ("parquet", "snappy", "parquet"), ("parquet", "none", "parquet")],
)
def test_file_extension(fmt: Any, compression: Any, extension: str) -> None:
    assert file_extension(fmt, compression) == extension


@pytest.mark.parametrize(("fmt", "compression", "expected"), [
    ("jsonl", "none", "application/x-ndjson"), ("csv", "none", "text/csv; charset=utf-8"),
    ("jsonl", "gzip", "application/gzip"), ("csv", "zstd", "application/zstd"),
    ("parquet", "zstd", "application/vnd.apache.parquet"), ("parquet", "gzip", "application/vnd.apache.parquet"),
])
def test_content_type(fmt: Any, compression: Any, expected: str) -> None:
    assert content_type(fmt, compression) == expected


# ---------------------------------------------------------------------------------------------
# Exact parsing


@pytest.mark.parametrize(
    ("literal", "cell"),
    [
        ("0", "0"),
        ("-17", "-17"),
        ("9223372036854775807", "9223372036854775807"),
        ("18446744073709551615", "18446744073709551615"),
        ("1208925819614629174706176", "1208925819614629174706176"),  # 2**80
        ("-1208925819614629174706176", "-1208925819614629174706176"),
        ("1.5", "1.5"),
        ("1.0", "1.0"),
        ("-0.0", "-0.0"),
        ("0.0001", "0.0001"),
        ("1.50", "1.50"),
        ("1.00", "1.00"),
        ("0.00001", "0.00001"),
        ("1e400", "1e400"),
        ("1E-7", "1E-7"),
        ("2.5e+3", "2.5e+3"),
        ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
        ("123456789012345.6", "123456789012345.6"),
        ("1234567890123456.7", "1234567890123456.7"),
    ],
)
def test_numbers_keep_their_exact_text(literal: str, cell: str) -> None:
    line = f'{{"n":{literal},"in_list":[{literal}],"nested":{{"n": {literal}}}}}'.encode()
    cells = flatten_record(parse_exact(line))
    assert cells == {"n": cell, "in_list": f"[{cell}]", "nested.n": cell}


def test_big_integers_stay_integers_and_floats_become_json_numbers() -> None:
    record = parse_exact(b'{"big":1208925819614629174706176,"f":1.50,"small":3}')
    assert record["big"] == 2**80 and type(record["big"]) is int
    assert record["f"] == JsonNumber("1.50") and float(record["f"]) == 1.5
    assert record["small"] == 3


def test_number_like_text_inside_a_string_stays_text() -> None:
    assert parse_exact(b'{"id":"x:12345678901234567890123","price":1.25}') == {
        "id": "x:12345678901234567890123",
        "price": 1.25,
    }
    # Escaped text is not orjson's own form, so the number check runs; its false alarm only means
    # the exact (slower) parser, which gives the same values with floats as their literal text.
    record = parse_exact(b'{"id":"x:12345678901234567890123","caf\\u00e9":1.25}')
    assert record == {"id": "x:12345678901234567890123", "café": JsonNumber("1.25")}


def test_escaped_text_without_suspect_numbers_stays_on_the_fast_path() -> None:
    assert parse_exact(b'{"caf\\u00e9":1.25,"n":[1,2]}') == {"café": 1.25, "n": [1, 2]}


@pytest.mark.parametrize("line", [b"[1,2]", b'"text"', b"3", b"{not json}", b'{"a":NaN}', b'{"a":1e999,}'])
def test_parse_exact_rejects_what_is_not_a_json_object(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_exact(line)


# ---------------------------------------------------------------------------------------------
# Flattening


@pytest.mark.parametrize(
    ("record", "cells"),
    [
        ({}, {}),
        ({"a": "x"}, {"a": "x"}),
        ({"a": {"b": 1, "c": {"d": True}}}, {"a.b": "1", "a.c.d": "true"}),
        ({"a": {}}, {"a": "{}"}),
        ({"a": {"b": {}}}, {"a.b": "{}"}),
        ({"a": [1, "two", None, {"k": [False]}]}, {"a": '[1,"two",null,{"k":[false]}]'}),
        ({"a": []}, {"a": "[]"}),
        ({"a": None, "b": False, "c": True}, {"a": "", "b": "false", "c": "true"}),
        ({"f": 0.1, "i": -5, "z": 0}, {"f": "0.1", "i": "-5", "z": "0"}),
        ({"s": " padded ", "u": "Zoë ☕"}, {"s": " padded ", "u": "Zoë ☕"}),
        ({"a": ["é"]}, {"a": '["é"]'}),
        ({"big": 2**80, "list": [2**80]}, {"big": str(2**80), "list": f"[{2**80}]"}),
        ({"n": JsonNumber("1.50"), "l": [JsonNumber("1e400")]}, {"n": "1.50", "l": "[1e400]"}),
        ({"a.b": 1, "a": {"c": 2}}, {"a.b": "1", "a.c": "2"}),
        ({"": 1, "a": {"": 2}}, {"": "1", "a.": "2"}),
    ],
)
def test_flatten_record(record: dict[str, Any], cells: dict[str, str]) -> None:
    assert flatten_record(record) == cells


@pytest.mark.parametrize(
    ("record", "column"),
    [
        ({"a.b": 1, "a": {"b": 2}}, "a.b"),
        ({"a": {"b": 2}, "a.b": 1}, "a.b"),
        ({"a": {"b.c": 1}, "a.b": {"c": 2}}, "a.b.c"),
        ({"a.": 1, "a": {"": 2}}, "a."),
        ({"x.y": {}, "x": {"y": None}}, "x.y"),
    ],
)
def test_a_column_collision_is_an_error_naming_the_column(record: dict[str, Any], column: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(column))):
        flatten_record(record)


# ---------------------------------------------------------------------------------------------
# JSONL


def test_encode_jsonl_moves_the_bytes() -> None:
    assert encode_jsonl(LINES) == b"\n".join(LINES) + b"\n"
    assert encode_jsonl([]) == b""


def test_jsonl_gzip_round_trip_is_byte_exact() -> None:
    gz = GzipStream()
    data = gz.compress(encode_jsonl(LINES[:3])) + gz.compress(encode_jsonl(LINES[3:])) + gz.finish()
    text = gunzip_single_member(data)
    assert text.splitlines() == LINES
    assert [parse_exact(line) for line in text.splitlines()] == RECORDS
    assert [orjson.loads(line) for line in text.splitlines()[3:]] == [orjson.loads(line) for line in LINES[3:]]
    assert json.loads(text.splitlines()[2])["n"] == 2**80


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_reads_back_as_the_flattened_records() -> None:
    encoder = CsvEncoder(COLUMNS)
    body, count = encoder.encode(LINES)
    header, rows = csv_rows_as_dicts(encoder.header() + body)
    assert count == len(LINES)
    assert header == COLUMNS
    assert rows == [expected_cells(record, COLUMNS) for record in RECORDS]


def test_csv_cells_a_reader_sees() -> None:
    encoder = CsvEncoder(COLUMNS)
    _, rows = csv_rows_as_dicts(encoder.header() + encoder.encode(LINES)[0])
    assert rows[0]["props.items"] == "[1,2,3]"
    assert rows[1]["user.traits.name"] == 'Zoë, "Z"'
    assert rows[2]["n"] == "1208925819614629174706176"
    assert rows[2]["f"] == "1.50"
    assert rows[2]["e"] == "1e400"
    assert rows[3]["a.b.c.d.e.f.g"] == "bottom"
    assert rows[4]["props"] == "{}" and rows[4]["list"] == "[]" and rows[4]["none"] == "" and rows[4]["no"] == "false"
    assert rows[5]["event"] == " spaced "
    assert rows[5]["text"] == "line1\nline2\r\nline3"
    assert rows[6]["list"] == '[{"k":12345678901234567890123},1.10,"x",null]'
    assert rows[7] == dict.fromkeys(COLUMNS, "")


def test_csv_text_is_rfc4180() -> None:
    encoder = CsvEncoder(["a", "b"])
    body, _ = encoder.encode([b'{"a":"x,y","b":"say \\"hi\\""}', b'{"a":"two\\nlines"}', b'{"b":"plain"}'])
    assert encoder.header() == b"a,b\r\n"
    assert body == b'"x,y","say ""hi"""\r\n"two\nlines",\r\n,plain\r\n'
    assert not body.startswith(b"\xef\xbb\xbf")


def test_csv_header_is_stable_and_in_the_given_order() -> None:
    assert CsvEncoder(["b", "a.c", "a"]).header() == b"b,a.c,a\r\n"
    assert CsvEncoder(["b", "a.c", "a"]).header() == CsvEncoder(["b", "a.c", "a"]).header()


def test_csv_record_with_a_column_not_in_the_header_is_an_error_naming_it() -> None:
    encoder = CsvEncoder(["a"])
    with pytest.raises(RecordError, match=r"'b\.c'") as caught:
        encoder.encode([b'{"a":1}', b'{"a":2,"b":{"c":3}}'])
    assert caught.value.index == 1
    assert encoder.encode([b'{"a":1}']) == (b"1\r\n", 1)  # the encoder is still usable


def test_csv_collision_is_an_error_naming_the_record() -> None:
    with pytest.raises(RecordError, match=r"record 2 .*'a\.b'"):
        CsvEncoder(["a.b"]).encode([b'{"a.b":1}', b'{"a.b":1,"a":{"b":2}}'])


def test_invalid_line_is_an_error_naming_it() -> None:
    with pytest.raises(RecordError, match="line 3") as caught:
        CsvEncoder(["a"]).encode([b'{"a":1}', b'{"a":2}', b'{"a":', b'{"a":4}'])
    assert caught.value.index == 2
    with pytest.raises(RecordError, match="line 1"):
        CsvEncoder(["a"]).encode([b"[1]"])


def test_csv_matches_the_csv_module_byte_for_byte() -> None:
    encoder = CsvEncoder(COLUMNS)
    body, _ = encoder.encode(LINES * 3)  # the second and third rounds use the learned shapes
    assert body == csv_module_text(RECORDS * 3, COLUMNS)
    assert encoder.header() == csv_module_text([dict(zip(COLUMNS, COLUMNS, strict=True))], COLUMNS)


# Records sharing their keys but not their value types: a learned row shape must never be
# applied to a record it does not fit.
SAME_KEYS_OTHER_TYPES: list[bytes] = [
    b'{"a":1,"b":{"c":"x","d":[1]}}',
    b'{"a":2,"b":{"c":"y, z","d":[1,"two"]}}',
    b'{"a":true,"b":{"c":"x","d":[]}}',
    b'{"a":1.5,"b":{"c":null,"d":{}}}',
    b'{"a":"1","b":{"c":"q\\"uote","d":false}}',
    b'{"a":1,"b":{"c":{"e":1},"d":[1]}}',
    b'{"a":1,"b":{"e":"x","d":[1]}}',
    b'{"a":1,"b":{"c":"x"}}',
    b'{"a":1,"b":"not an object"}',
    b'{"a":1,"b":{}}',
    b'{"a":1,"b":{"c":"x","d":{"f":0.00001}}}',
    b'{"a":1.50,"b":{"c":"x","d":[1208925819614629174706176]}}',
    b'{"a":0,"b":{"c":"line\\nbreak","d":[1]}}',
    b'{"b":{"c":"x","d":[1]},"a":1}',
    b'{"a":1208925819614629174706176,"b":{"c":"x","d":[1]}}',
    b'{"a":18446744073709551615,"b":{"c":"x","d":[1]}}',
    b'{"a":1,"b":{"c":"x","d":[1]}}',
]


def test_learned_row_shapes_never_misapply() -> None:
    records = [parse_exact(line) for line in SAME_KEYS_OTHER_TYPES]
    columns = sorted({column for record in records for column in flatten_record(record)})
    encoder = CsvEncoder(columns)
    for _ in range(3):
        assert encoder.encode(SAME_KEYS_OTHER_TYPES) == (csv_module_text(records, columns), len(records))


@pytest.mark.parametrize(
    ("columns", "lines"),
    [
        (["only"], [b'{"only":""}', b'{"only":""}', b"{}", b'{"only":"x"}']),
        (["a", "b"], [b"{}", b"{}"]),
        (["a", "b"], [b'{"a":"","b":""}'] * 3),
        (["a,b", 'q"'], [b'{"a,b":"1","q\\"":"2"}'] * 2),
    ],
)
def test_csv_edge_rows_match_the_csv_module(columns: list[str], lines: list[bytes]) -> None:
    encoder = CsvEncoder(columns)
    body, count = encoder.encode(lines)
    assert count == len(lines)
    assert body == csv_module_text([parse_exact(line) for line in lines], columns)
    assert encoder.header() == csv_module_text([dict(zip(columns, columns, strict=True))], columns)


def test_bad_line_index_counts_across_the_whole_chunk() -> None:
    lines = [b'{"a":1}'] * 2500
    lines[1499] = b'{"a":'
    with pytest.raises(RecordError, match="line 1500 ") as caught:
        CsvEncoder(["a"]).encode(lines)
    assert caught.value.index == 1499


def test_deep_nesting() -> None:
    depth = 300  # deeper than orjson writes, well within what it reads
    line = b'{"a":' * depth + b'"bottom"' + b"}" * depth
    column = ".".join(["a"] * depth)
    assert CsvEncoder([column, "z"]).encode([line, line]) == (b"bottom,\r\nbottom,\r\n", 2)
    assert flatten_record(parse_exact(line)) == {column: "bottom"}
    too_deep = b'{"a":' * 1020 + b"1" + b"}" * 1020
    with pytest.raises(RecordError, match="too deeply"):
        CsvEncoder(["z"]).encode([too_deep])


def test_duplicate_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        CsvEncoder(["a", "a"])


def test_csv_encode_takes_any_iterable() -> None:
    assert CsvEncoder(["a"]).encode(iter([b'{"a":1}', b'{"a":2}'])) == (b"1\r\n2\r\n", 2)
    assert CsvEncoder(["a"]).encode([]) == (b"", 0)


# ---------------------------------------------------------------------------------------------
# Compression


@pytest.mark.parametrize("level", [1, 6, 9])
def test_gzip_stream_is_one_member_per_file(level: int) -> None:
    payload = b"".join(LINES) * 200
    gz = GzipStream(level)
    data = b"".join(gz.compress(payload[i : i + 1000]) for i in range(0, len(payload), 1000)) + gz.finish()
    assert gunzip_single_member(data) == payload


def test_empty_gzip_file_is_still_valid() -> None:
    assert gunzip_single_member(GzipStream().finish()) == b""


def test_new_compressor() -> None:
    assert isinstance(new_compressor("gzip", 1), GzipStream)
    passthrough = new_compressor("none")
    assert isinstance(passthrough, PassThrough)
    assert passthrough.compress(b"abc") == b"abc" and passthrough.finish() == b""
    with pytest.raises(ValueError, match="compression"):
        new_compressor("snappy")
    with pytest.raises(ValueError, match="level"):
        GzipStream(10)


# ---------------------------------------------------------------------------------------------
# Streaming lines


SMALL_STREAM = b'{"a":1}\n{"b":"x"}\n\n{"c":[1,2]}\n{"d":"\xc3\xa9"}'
SMALL_LINES = [b'{"a":1}', b'{"b":"x"}', b'{"c":[1,2]}', b'{"d":"\xc3\xa9"}']


@pytest.mark.parametrize("first_cut", range(len(SMALL_STREAM) + 1))
def test_split_lines_at_every_boundary(first_cut: int) -> None:
    for second_cut in range(first_cut, len(SMALL_STREAM) + 1):
        chunks = [SMALL_STREAM[:first_cut], SMALL_STREAM[first_cut:second_cut], SMALL_STREAM[second_cut:]]
        batches = list(split_lines(chunks))
        assert all(batches)
        assert [line for batch in batches for line in batch] == SMALL_LINES


@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_split_lines_matches_splitting_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    chunks = [data[start:end] for start, end in pairwise(bounds)]
    got = [line for batch in split_lines(chunks) for line in batch]
    assert got == [line for line in data.split(b"\n") if line]


def test_split_lines_joins_a_line_spread_over_many_chunks() -> None:
    assert list(split_lines([b"ab", b"cd", b"", b"ef\ngh", b"\n"])) == [[b"abcdef"], [b"gh"]]


@pytest.mark.parametrize(
    ("sizes", "budget", "fits"),
    [
        ([], 100, 0),
        ([10], 0, 1),
        ([10], 11, 1),
        ([10, 10], 21, 1),
        ([10, 10], 22, 2),
        ([10, 10, 10], 32, 2),
        ([10, 10, 10], 1000, 3),
        ([50, 1, 1], 10, 1),
    ],
)
def test_take_until(sizes: list[int], budget: int, fits: int) -> None:
    assert take_until([b"x" * size for size in sizes], budget) == fits


# ---------------------------------------------------------------------------------------------
# Parts


def decode_part(chunks: list[EncodedChunk], compression: str) -> bytes:
    data = b"".join(chunk.data for chunk in chunks)
    return gunzip_single_member(data) if compression == "gzip" else data


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_part_encoder_round_trip(fmt: Any, compression: Any) -> None:
    part = PartEncoder(fmt, compression, COLUMNS if fmt == "csv" else None, level=1)
    chunks = [part.feed(LINES[:2]), part.feed([]), part.feed(LINES[2:5]), part.feed(LINES[5:]), part.close()]
    text = decode_part(chunks, compression)

    assert part.records == sum(chunk.records for chunk in chunks) == len(LINES)
    assert part.raw_bytes == sum(chunk.raw_bytes for chunk in chunks) == len(text)
    if fmt == "jsonl":
        assert text == encode_jsonl(LINES)
    else:
        header, rows = csv_rows_as_dicts(text)
        assert header == COLUMNS
        assert rows == [expected_cells(record, COLUMNS) for record in RECORDS]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_large_chunks_gzipped_in_the_background_stay_in_order(fmt: Any) -> None:
    lines = [f'{{"n":{i},"text":"row {i} caf\u00e9"}}'.encode() for i in range(30000)]
    columns = ["n", "text"] if fmt == "csv" else None
    part = PartEncoder(fmt, "gzip", columns, level=1)
    chunks = [part.feed(lines[i : i + 7000]) for i in range(0, len(lines), 7000)]
    chunks.append(part.close())
    text = decode_part(chunks, "gzip")
    assert len(text) == part.raw_bytes > 500_000
    if fmt == "jsonl":
        assert text == encode_jsonl(lines)
    else:
        assert text == b"n,text\r\n" + csv_module_text([orjson.loads(line) for line in lines], ["n", "text"])


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_csv_part_without_records_still_has_its_header(compression: Any) -> None:
    part = PartEncoder("csv", compression, ["a", "b"])
    first = part.close()
    assert decode_part([first], compression) == b"a,b\r\n"
    assert first.raw_bytes == part.raw_bytes == 5
    assert part.records == 0


def test_part_encoder_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="columns"):
        PartEncoder("csv", "gzip")
    with pytest.raises(ValueError, match="format"):
        PartEncoder("parquet", "gzip")  # type: ignore[arg-type]
    part = PartEncoder("jsonl", "none")
    part.close()
    with pytest.raises(RuntimeError):
        part.feed(LINES)


def test_rolling_parts_with_take_until() -> None:
    """The caller's loop: cut chunks at line boundaries so no part passes the size limit."""
    limit = 300
    pending, parts = list(LINES * 5), []
    while pending:
        part = PartEncoder("jsonl", "gzip")
        chunks = []
        while pending:
            room = limit - part.raw_bytes
            n = take_until(pending, room)
            if part.records and len(pending[0]) + 1 > room:
                break  # the next line needs a part of its own
            chunks.append(part.feed(pending[:n]))
            pending = pending[n:]
        parts.append(decode_part([*chunks, part.close()], "gzip"))
    assert len(parts) > 1
    assert b"".join(parts) == encode_jsonl(LINES * 5)
    assert all(len(text) <= limit or text.count(b"\n") == 1 for text in parts)


# ---------------------------------------------------------------------------------------------
# Properties

KEYS = st.text(alphabet=st.characters(blacklist_characters=".", blacklist_categories=["Cs"]), max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
RECORD = st.dictionaries(KEYS, VALUES, max_size=8)


def dumps_exact(record: dict[str, Any]) -> bytes:
    """Compact JSON as a platform would send it, integers of any size included."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def same_json_value(cell: str, value: Any) -> bool:
    return json.loads(cell) == value if cell else value is None


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORD, min_size=1, max_size=6))
def test_any_record_survives_csv(records: list[dict[str, Any]]) -> None:
    lines = [dumps_exact(record) for record in records]
    parsed = [parse_exact(line) for line in lines]
    columns = sorted({column for record in parsed for column in flatten_record(record)})
    part = PartEncoder("csv", "gzip", columns)
    text = decode_part([part.feed(lines[:2]), part.feed(lines[2:]), part.close()], "gzip")

    header, rows = csv_rows_as_dicts(text)
    assert header == columns
    assert rows == [expected_cells(record, columns) for record in parsed]
    for original, row in zip(records, rows, strict=True):
        cells = flatten_record(original)  # the same columns as the exact parse, the same values
        assert cells.keys() <= set(columns)
        for column, cell in cells.items():
            assert cell == row[column] or same_json_value(row[column], json.loads(cell) if cell else None)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORD, max_size=6), level=st.sampled_from([1, 6]))
def test_any_record_survives_jsonl(records: list[dict[str, Any]], level: int) -> None:
    lines = [dumps_exact(record) for record in records]
    part = PartEncoder("jsonl", "gzip", level=level)
    text = decode_part([part.feed(lines[:3]), part.feed(lines[3:]), part.close()], "gzip")
    assert text == encode_jsonl(lines)
    assert [json.loads(line) for line in text.splitlines()] == records


SMALL_KEYS = st.sampled_from(["a", "b", "é", "x,y", 'q"'])
SHAPED_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SMALL_KEYS, inner, max_size=3), max_leaves=8
)
SAME_TYPE: dict[type, st.SearchStrategy[Any]] = {
    str: st.text(),
    int: st.integers(),
    float: st.floats(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
    type(None): st.none(),
    list: st.lists(SCALARS, max_size=3),
}


@st.composite
def same_keys_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records drawn from a few base records, some values redrawn: many share keys, some also types."""
    bases = draw(st.lists(st.dictionaries(SMALL_KEYS, SHAPED_VALUES, min_size=1, max_size=4), min_size=1, max_size=3))

    def vary(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: vary(inner) for key, inner in value.items()}
        return draw(st.sampled_from([value, draw(SAME_TYPE[type(value)]), draw(SHAPED_VALUES)]))

    return [vary(draw(st.sampled_from(bases))) for _ in range(draw(st.integers(min_value=1, max_value=12)))]


@settings(max_examples=300, deadline=None)
@given(records=same_keys_records())
def test_csv_matches_the_csv_module_for_records_that_share_keys(records: list[dict[str, Any]]) -> None:
    lines = [dumps_exact(record) for record in records]
    parsed = [parse_exact(line) for line in lines]
    columns = sorted({column for record in parsed for column in flatten_record(record)})
    encoder = CsvEncoder(columns)
    for _ in range(2):
        assert encoder.encode(lines) == (csv_module_text(parsed, columns), len(lines))
