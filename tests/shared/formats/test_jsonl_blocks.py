"""JSONL export moves staged lines a chunk at a time: blocks must hold exactly the lines split_lines finds."""

from __future__ import annotations

import gzip
import random
from typing import Any

import pytest

from shared.formats import serialization
from shared.formats.serialization import PartEncoder, cut_block, split_blocks, split_lines, take_until

STAGED = [
    b'{"a":1}\n{"b":"\xc3\xbc"}\n{"c":[1,2]}\n',
    b'{"a":1}\n{"b":2}',  # no final newline
    b'\n{"a":1}\n\n\n{"b":2}\n\n',  # empty lines are dropped
    b'{"long":"' + b"x" * 5000 + b'"}\n{"short":1}\n',
    b"",
    b"\n\n",
]


def cut_anywhere(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 6))))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("data", STAGED)
@pytest.mark.parametrize("seed", range(20))
def test_blocks_hold_the_lines_split_lines_finds(data: bytes, seed: int) -> None:
    chunks = cut_anywhere(data, random.Random(seed))
    lines = [line for group in split_lines(chunks) for line in group]
    blocks = list(split_blocks(chunks))
    assert all(blocks) and all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks) == b"".join(line + b"\n" for line in lines)
    assert sum(block.count(b"\n") for block in blocks) == len(lines)


@pytest.mark.parametrize("budget", [-5, 0, 1, 7, 8, 9, 20, 21, 22, 1000])
def test_cut_block_cuts_where_take_until_does(budget: int) -> None:
    lines = [b'{"a":1}', b'{"bb":2}', b"{}", b'{"c":"xyz"}']
    block = b"".join(line + b"\n" for line in lines)
    count = take_until(lines, budget)
    assert cut_block(block, budget) == sum(len(line) + 1 for line in lines[:count])


def test_a_part_fed_blocks_is_the_part_fed_lines() -> None:
    lines = [b'{"n":%d,"s":"\xe6\x9d\xb1\xe4\xba\xac"}' % i for i in range(5000)]
    by_lines = PartEncoder("jsonl", "gzip")
    data = by_lines.feed(lines[:3000]).data + by_lines.feed(lines[3000:]).data + by_lines.close().data
    by_blocks = PartEncoder("jsonl", "gzip")
    blocks = list(split_blocks([b"\n".join(lines[:3000]) + b"\n", b"\n".join(lines[3000:])]))
    fed = [by_blocks.feed_block(block, block.count(b"\n")) for block in blocks]
    data_blocks = b"".join(chunk.data for chunk in fed) + by_blocks.close().data
    assert gzip.decompress(data_blocks) == gzip.decompress(data)
    assert by_blocks.records == by_lines.records == 5000
    assert by_blocks.raw_bytes == by_lines.raw_bytes


def test_a_csv_part_refuses_blocks() -> None:
    with pytest.raises(ValueError, match="CSV"):
        PartEncoder("csv", "none", ["a"]).feed_block(b'{"a":1}\n', 1)


def test_a_part_of_one_chunk_is_compressed_at_once_and_later_chunks_beside_the_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of one chunk (most of a backfill's thousands) is compressed where it is fed: handing it to a helper
    and waiting for it at close would cost more than the compression. Chunks after the first go to the shared
    helpers, one at a time per part, and the file is the same."""
    handed: list[int] = []
    real_submit = serialization._COMPRESSORS.submit

    def submit(work: Any, text: bytes) -> Any:
        handed.append(len(text))
        return real_submit(work, text)

    monkeypatch.setattr(serialization._COMPRESSORS, "submit", submit)
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 97)) for i in range(3000)]
    block = b"".join(lines)
    assert len(block) > 2 * serialization._BACKGROUND_BYTES
    one = PartEncoder("jsonl", "gzip")
    assert gzip.decompress(one.feed_block(block, 3000).data + one.close().data) == block
    assert handed == []
    many = PartEncoder("jsonl", "gzip")
    thirds = [b"".join(lines[:1000]), b"".join(lines[1000:2000]), b"".join(lines[2000:])]
    data = b"".join(many.feed_block(piece, piece.count(b"\n")).data for piece in thirds) + many.close().data
    assert gzip.decompress(data) == b"".join(thirds) and handed == [len(thirds[1]), len(thirds[2])]
