"""Export one run (one batch, or several coalesced) into a destination container: partitions -> parts ->
manifest.

Layout (all names deterministic, so a re-run overwrites rather than duplicates; a run of one batch is named
by the batch's id):
  {prefix}{type}/date=YYYY-MM-DD/hour=HH/{run_id}-{part:04d}.{ext}     events (UTC event-time hour)
  {prefix}{type}/date=YYYY-MM-DD/{run_id}-{part:04d}.{ext}             events, `partition: "day"`
  {prefix}profiles/date=YYYY-MM-DD/{run_id}-{part:04d}.{ext}           profiles (export date)
  {prefix}{type}/_manifests/{run_id}.json                              written after every data file

An output partition gathers the staged partitions that land in it (an hour of each batch of the run, or the
hours of a day). Partitions whose staged records fit in one block are written several at once, each file
with a single Put Blob; larger ones one at a time, as staged blocks and a commit (their blocks are uploaded
several at once already).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Literal

import orjson
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.control.batch_state import LandedFile, StagedPartition
from shared.export.block_upload import BlockUploader, WrittenFile, new_attempt_tag
from shared.formats.serialization import (
    PartEncoder,
    content_type,
    cut_block,
    file_extension,
    split_blocks,
    split_lines,
)
from shared.logging_setup import log_event

log = logging.getLogger(__name__)

# Lines encoded at once: a downloaded chunk (STREAM_CHUNK_BYTES) holds tens of thousands, and the
# CSV text of all of them at once would cost memory for no speed.
FEED_LINES = 10_000


Granularity = Literal["hour", "day"]


def partition_dir(prefix: str, record_type: str, partition_key: str, export_date: str) -> str:
    if record_type == "profiles":
        return f"{prefix}profiles/date={export_date}/"
    return f"{prefix}{record_type}/{partition_key}/"


def part_name(directory: str, run_id: str, part: int, extension: str) -> str:
    return f"{directory}{run_id}-{part:04d}.{extension}"


def manifest_name(prefix: str, record_type: str, run_id: str) -> str:
    return f"{prefix}{record_type}/_manifests/{run_id}.json"


def output_key(staged_key: str, granularity: Granularity) -> str:
    """The destination partition a staged partition lands in: its hour, or with "day" the hour's date."""
    return staged_key.split("/hour=", 1)[0] if granularity == "day" else staged_key


@dataclass(frozen=True)
class OutputPartition:
    """One destination partition of a run: the staged partitions written into its files, in order."""

    key: str
    sources: tuple[StagedPartition, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV header: every column of every source, sorted."""
        if len(self.sources) == 1:
            return self.sources[0].columns
        return tuple(sorted({column for source in self.sources for column in source.columns}))

    @property
    def staged_bytes(self) -> int:
        return sum(source.bytes for source in self.sources)


def output_partitions(staged: Sequence[StagedPartition], granularity: Granularity) -> list[OutputPartition]:
    """The run's staged partitions (of one batch, or of several in run order) grouped by destination partition,
    in key order."""
    grouped: dict[str, list[StagedPartition]] = {}
    for partition in staged:
        grouped.setdefault(output_key(partition.key, granularity), []).append(partition)
    return [OutputPartition(key, tuple(sources)) for key, sources in sorted(grouped.items())]


@dataclass(frozen=True)
class ExportPlan:
    """What to write, independent of how the bytes are fetched."""

    run_id: str  # names the files and the manifest: the batch's id for a run of one batch
    destination_id: str
    record_type: str
    prefix: str
    fmt: str
    compression: str
    export_date: str
    part_max_bytes: int
    block_bytes: int
    max_in_flight: int
    gzip_level: int = 6
    attempt_tag: str = field(default_factory=new_attempt_tag)  # names this attempt's blocks (block_upload)
    file_concurrency: int = 8  # small output partitions written at once

    def first_part_names(self, outputs: Sequence[OutputPartition]) -> list[str]:
        """The first file of every output partition: each partition has one, whatever its size."""
        extension = file_extension(self.fmt, self.compression)  # type: ignore[arg-type]
        return [part_name(partition_dir(self.prefix, self.record_type, o.key, self.export_date), self.run_id, 0,
                          extension) for o in outputs]


@dataclass
class ExportResult:
    files: list[LandedFile] = field(default_factory=list)  # as the manifest and the batch state list them

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


BeforeCommit = Callable[[str], None]


def _content_settings(plan: ExportPlan) -> ContentSettings:
    if plan.compression == "gzip":
        return ContentSettings(content_type="application/gzip")
    return ContentSettings(content_type=content_type(plan.fmt))  # type: ignore[arg-type]


class PartitionWriter:
    """Streams one output partition's staged lines into as many parts as the size limit asks for."""

    def __init__(self, container: ContainerClient, plan: ExportPlan, pool: ThreadPoolExecutor,
                 partition: OutputPartition, before_commit: BeforeCommit):
        self.container, self.plan, self.pool = container, plan, pool
        self.partition = partition
        self.before_commit = before_commit
        self.directory = partition_dir(plan.prefix, plan.record_type, partition.key, plan.export_date)
        self.extension = file_extension(plan.fmt, plan.compression)  # type: ignore[arg-type]
        self.files: list[LandedFile] = []
        self._encoder: PartEncoder | None = None
        self._uploader: BlockUploader | None = None

    def _open(self) -> tuple[PartEncoder, BlockUploader]:
        name = part_name(self.directory, self.plan.run_id, len(self.files), self.extension)
        columns = self.partition.columns if self.plan.fmt == "csv" else None
        self._encoder = PartEncoder(self.plan.fmt, self.plan.compression, columns, level=self.plan.gzip_level)  # type: ignore[arg-type]
        self._uploader = BlockUploader(self.container, name, block_bytes=self.plan.block_bytes, pool=self.pool,
                                       max_in_flight=self.plan.max_in_flight, attempt=self.plan.attempt_tag)
        return self._encoder, self._uploader

    def _close(self) -> None:
        encoder, uploader = self._encoder, self._uploader
        assert encoder is not None and uploader is not None
        uploader.write(encoder.close().data)
        uploader.flush()  # a file of several blocks: its last block uploads while the part is recorded
        self.before_commit(uploader.name)
        written: WrittenFile = uploader.commit(_content_settings(self.plan))
        self.files.append(LandedFile(name=written.name, records=encoder.records, bytes=written.bytes,
                                     md5=written.md5_hex, content_md5=written.md5_base64,
                                     partition=self.partition.key or f"date={self.plan.export_date}"))
        self._encoder = self._uploader = None

    def write(self, chunks: Iterator[bytes]) -> list[LandedFile]:
        try:
            if self.plan.fmt == "jsonl":
                self._write_blocks(chunks)
            else:
                self._write_lines(chunks)
            if self._encoder is not None:
                self._close()
        except BaseException:
            if self._uploader is not None:
                self._uploader.abandon()
            raise
        return self.files

    def _part_with_room(self) -> tuple[PartEncoder, BlockUploader]:
        """The part to write to: the open one, or a new one when there is none or it is full."""
        encoder, uploader = (self._encoder, self._uploader) if self._encoder else self._open()
        if encoder.records and encoder.raw_bytes >= self.plan.part_max_bytes:
            self._close()
            encoder, uploader = self._open()
        assert uploader is not None
        return encoder, uploader

    def _write_lines(self, chunks: Iterator[bytes]) -> None:
        for lines in split_lines(chunks):
            while lines:
                encoder, uploader = self._part_with_room()
                # At least 1, so a part always makes progress; CSV is counted by the rows it writes (issue 11).
                count = encoder.lines_within(lines[:FEED_LINES], self.plan.part_max_bytes - encoder.raw_bytes)
                uploader.write(encoder.feed(lines[:count]).data)
                lines = lines[count:]

    def _write_blocks(self, chunks: Iterator[bytes]) -> None:
        """JSONL: staged lines move as they are, a downloaded chunk at a time (never a line at a time)."""
        for block in split_blocks(chunks):
            while block:
                encoder, uploader = self._part_with_room()
                end = cut_block(block, self.plan.part_max_bytes - encoder.raw_bytes)  # at least one line
                uploader.write(encoder.feed_block(block[:end], block.count(b"\n", 0, end)).data)
                block = block[end:]


ReadStaged = Callable[[StagedPartition], Iterator[bytes]]


def write_run(
    container: ContainerClient,
    plan: ExportPlan,
    outputs: Sequence[OutputPartition],
    read_staged: ReadStaged,
    before_commit: BeforeCommit,
) -> ExportResult:
    """Write every output partition's parts; the caller writes the manifest after this returns.

    Partitions of at most one block of staged records are written `file_concurrency` at once (a small file is
    one Put Blob: its cost is round trips, which overlap); larger ones one after another, each uploading
    `max_in_flight` blocks at once. Files are listed in partition order whatever order they finished in.
    """
    small = [o for o in outputs if o.staged_bytes <= plan.block_bytes]
    large = [o for o in outputs if o.staged_bytes > plan.block_bytes]
    written: dict[str, list[LandedFile]] = {}
    with ThreadPoolExecutor(max_workers=plan.max_in_flight, thread_name_prefix="upload") as blocks, \
            ThreadPoolExecutor(max_workers=max(1, plan.file_concurrency), thread_name_prefix="file") as files:

        def write(partition: OutputPartition) -> list[LandedFile]:
            writer = PartitionWriter(container, plan, blocks, partition, before_commit)
            return writer.write(chain.from_iterable(read_staged(source) for source in partition.sources))

        pending = {files.submit(write, partition): partition.key for partition in small}
        try:
            for partition in large:
                written[partition.key] = write(partition)
            for future in as_completed(pending):
                written[pending[future]] = future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return ExportResult(files=[f for o in outputs for f in written[o.key]])


def build_manifest(plan: ExportPlan, result: ExportResult, created_at: str, moment: datetime,
                   batches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The manifest: a batch's, or with `batches` (their ids and record counts) a coalesced run's, which names
    the run instead of a batch."""
    head: dict[str, Any] = {"batch_id": plan.run_id} if batches is None else {"run_id": plan.run_id,
                                                                                "batches": batches}
    return {
        **head,
        "destination_id": plan.destination_id,
        "type": plan.record_type,
        "format": plan.fmt,
        "compression": plan.compression,
        "records": result.records,
        "bytes": result.bytes,
        "files": [f.model_dump() for f in result.files],
        "batch_created_at" if batches is None else "run_created_at": created_at,
        "exported_at": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def write_manifest(container: ContainerClient, plan: ExportPlan, manifest: dict[str, Any]) -> str:
    name = manifest_name(plan.prefix, plan.record_type, plan.run_id)
    container.upload_blob(name, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), overwrite=True,
                          content_settings=ContentSettings(content_type="application/json"))
    return name


def delete_stale(container: ContainerClient, names: list[str]) -> list[str]:
    """Delete parts an earlier attempt wrote that this one did not; return those that could not be deleted."""
    kept = []
    for name in names:
        try:
            container.delete_blob(name)
        except ResourceNotFoundError:
            continue
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
            kept.append(name)
    if names:
        log_event(log, "stale parts removed", removed=len(names) - len(kept), kept=len(kept))
    return kept
