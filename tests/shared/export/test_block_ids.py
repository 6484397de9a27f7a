"""Block ids are unique per attempt: a commit names exactly its own blocks (issue 11, item 5).

Two attempts at one batch (two instances during a deploy, one with another GZIP_LEVEL or PART_MAX_BYTES)
stage blocks of the same blob. When ids were the block's index, the later attempt's blocks replaced the
committing attempt's blocks of the same index, and the committed file mixed the two.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import ContainerClient, ContentSettings

from scripts import sample_data
from shared.export.block_upload import BlockUploader


def test_a_commit_holds_only_its_own_attempts_blocks_when_another_attempt_stages_the_same_blob(
    fresh_container: ContainerClient,
) -> None:
    text = sample_data.ndjson(list(sample_data.events(400, hours=1)))
    ours, theirs = gzip.compress(text, compresslevel=6), gzip.compress(text, compresslevel=1)
    name = "events/date=2026-11-20/hour=09/b20261120000000aaaaaaaaaaaaaaaaa-0000.jsonl.gz"
    # One upload thread: blocks are staged in exactly the order they are submitted.
    with ThreadPoolExecutor(max_workers=1) as pool:
        committing = BlockUploader(fresh_container, name, block_bytes=4096, pool=pool, max_in_flight=4)
        other = BlockUploader(fresh_container, name, block_bytes=3000, pool=pool, max_in_flight=4)
        committing.write(ours)
        committing.flush()
        other.write(theirs)  # the other attempt, slower, stages its blocks after ours...
        other.flush()
        other.abandon()  # ...and never commits (its lease was lost)
        written = committing.commit(ContentSettings(content_type="application/gzip"))

    landed = fresh_container.download_blob(name).readall()
    assert hashlib.md5(landed, usedforsecurity=False).hexdigest() == written.md5_hex, (
        "the committed file is not the bytes its attempt wrote: it holds another attempt's blocks")
    assert landed == ours and gzip.decompress(landed) == text
    committed = fresh_container.get_blob_client(name).get_block_list("committed")[0]
    assert len(committed) == -(-len(ours) // 4096)


def test_block_ids_keep_the_width_older_versions_used() -> None:
    """Azure refuses a block whose id length differs from the blob's other blocks: ids stay 14 characters,
    as "block-00000000" was, so a blob an older version left uncommitted blocks in can still be written."""
    from shared.export.block_upload import block_id, new_attempt_tag

    ids = {base64.b64decode(block_id(new_attempt_tag(), index)) for index in (0, 1, 49_999)}
    assert {len(i) for i in ids} == {len(b"block-00000000")}
    assert new_attempt_tag() != new_attempt_tag()
