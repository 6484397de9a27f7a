"""Export one run (one batch, or several coalesced) into a destination container: partitions -> parts ->
manifest.

Names (all deterministic, so a re-run overwrites rather than duplicates; a run of one batch is named by the
batch's id): ``{prefix}{folders}{run_id}-{part:04d}.{ext}``, the folders by the destination's layout
(`shared.formats.layouts`: hive ``{type}/date=YYYY-MM-DD/hour=HH/`` by default, dated, or a template), and
``{prefix}{type}/_manifests/{run_id}.json``, written after every data file.

An output partition gathers the staged partitions that land in it (an hour of each batch of the run, or the
hours of a day); its records go through the destination's filters (events left out, properties dropped) and,
with a template naming ``{event}``, to one file per event name. Partitions whose staged records fit in one block
are written several at once, each file with a single Put Blob; larger ones one at a time, as staged blocks and a
commit (their blocks are uploaded several at once already).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.control.batch_state import LandedFile, StagedPartition
from shared.control.destination_schemas import DestinationSchemas
from shared.export.block_upload import BlockUploader, WrittenFile, new_attempt_tag, tier_of
from shared.formats.layouts import Folders
from shared.formats.record_filters import RecordFilter
from shared.formats.record_routing import Routed, route_chunk
from shared.formats.serialization import (
    PartEncoder,
    content_type,
    cut_block,
    file_extension,
    split_blocks,
    split_lines,
)
from shared.logging_setup import log_event

if TYPE_CHECKING:
    from shared.control.store import ControlStore
    from shared.destinations.record import DestinationRecord
    from shared.formats.parquet_part import ParquetPart

log = logging.getLogger(__name__)

# Lines encoded at once: a downloaded chunk (STREAM_CHUNK_BYTES) holds tens of thousands, and the
# CSV text of all of them at once would cost memory for no speed.
FEED_LINES = 10_000
# Parts of one output partition open at once when files are split by event name: beyond, the one fed least
# recently is closed (its event's next records start its next part). Their staged bytes together are held to
# PART_MAX_BYTES too (the largest is closed), since a Parquet part is held in memory until it closes.
MAX_OPEN_PARTS = 32
# A Parquet part is held as Arrow arrays until it closes (its columns are known only then): a worker's peak RSS
# grew by about 1.6x its staged bytes. Measured with one batch of 1,000,000 bench events (270 MB staged, two
# hours): 388 MB at PART_MAX_BYTES' 100 MiB, 301 MB at 50 MiB, 263 MB at 25 MiB. 32 MiB of staged records (about
# 120,000 events, one row group, a file of about 5 MB) keep it under the 300 MB the bench holds it to.
PARQUET_PART_MAX_BYTES = 32 * 1024 * 1024


Granularity = Literal["hour", "day"]


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

    @property
    def records(self) -> int:
        return sum(source.records for source in self.sources)


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
    # The destination's layout, filters, Parquet columns and access tier (absent: hive, nothing filtered, typed,
    # the account's default tier), and the control storage that keeps a typed Parquet destination's schema.
    destination: DestinationRecord | None = None
    control: ControlStore | None = None
    exported_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # profiles' `_exported_at`

    @cached_property
    def part_budget(self) -> int:
        """The staged bytes a part holds at most: PART_MAX_BYTES, and at most PARQUET_PART_MAX_BYTES for Parquet."""
        return min(self.part_max_bytes, PARQUET_PART_MAX_BYTES) if self.fmt == "parquet" else self.part_max_bytes

    @cached_property
    def folders(self) -> Folders:
        record = self.destination
        if record is None:
            return Folders(self.prefix)
        return Folders(self.prefix, record.layout, record.path_template, record.partition)

    @cached_property
    def rules(self) -> RecordFilter:
        record = self.destination
        if record is None:
            return RecordFilter()
        return RecordFilter(record.include_events, record.exclude_events, record.drop_properties)

    @property
    def access_tier(self) -> str | None:
        return None if self.destination is None else self.destination.access_tier

    @property
    def parquet_columns(self) -> str:
        return (self.destination.parquet_columns if self.destination is not None else None) or "typed"

    @cached_property
    def schemas(self) -> DestinationSchemas | None:
        """A typed Parquet destination's schema, shared by the parts of this export."""
        if self.fmt != "parquet" or self.parquet_columns != "typed":
            return None
        if self.control is None:
            raise ValueError("a typed Parquet export needs control storage for the destination's schema")
        generation = None if self.destination is None else self.destination.generation
        return DestinationSchemas(self.control, self.destination_id, generation)

    def first_part_names(self, outputs: Sequence[OutputPartition]) -> list[str]:
        """The first file of every output partition: each partition has one, whatever its size (unless its files
        are split by event name, unknown until the records are read, or its records are all filtered out)."""
        if self.folders.splits_by_event:
            return []
        extension = file_extension(self.fmt, self.compression)  # type: ignore[arg-type]
        return [part_name(self.folders.folder_for(self.record_type, o.key, self.export_date), self.run_id, 0,
                          extension) for o in outputs]


@dataclass
class ExportResult:
    files: list[LandedFile] = field(default_factory=list)  # as the manifest and the batch state list them
    received: int = 0  # the records of the run's batches, before the destination's filters

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


BeforeCommit = Callable[[str], None]


def _content_settings(plan: ExportPlan) -> ContentSettings:
    return ContentSettings(content_type=content_type(plan.fmt, plan.compression))  # type: ignore[arg-type]


Encoder: TypeAlias = "PartEncoder | ParquetPart"


@dataclass
class _Part:
    encoder: Encoder
    uploader: BlockUploader
    event: str | None


class PartitionWriter:
    """Streams one output partition's staged lines into as many parts as the size limit asks for (per event name
    when the folders name it)."""

    def __init__(self, container: ContainerClient, plan: ExportPlan, pool: ThreadPoolExecutor,
                 partition: OutputPartition, before_commit: BeforeCommit):
        self.container, self.plan, self.pool = container, plan, pool
        self.partition = partition
        self.before_commit = before_commit
        self.extension = file_extension(plan.fmt, plan.compression)  # type: ignore[arg-type]
        self.files: list[LandedFile] = []
        self._open: dict[str, _Part] = {}  # by folder, least recently fed first
        self._parts: dict[str, int] = {}  # parts closed so far, by folder

    def write(self, chunks: Iterator[bytes]) -> list[LandedFile]:
        plan = self.plan
        try:
            if plan.fmt == "jsonl" and not (plan.rules.filters_events or plan.rules.drops
                                            or plan.folders.splits_by_event):
                self._write_blocks(chunks)
            else:
                self._write_lines(chunks)
            for folder in list(self._open):
                self._close(folder)
        except BaseException:
            for part in self._open.values():
                part.uploader.abandon()
            raise
        return self.files

    def _folder(self, event: str | None) -> str:
        return self.plan.folders.folder_for(self.plan.record_type, self.partition.key, self.plan.export_date, event)

    def _new_encoder(self) -> Encoder:
        plan = self.plan
        if plan.fmt == "parquet":
            # Imported here: pyarrow costs a worker about 55 MB of memory, paid only once a destination writes Parquet.
            from shared.formats.parquet_part import ParquetPart

            schemas = plan.schemas
            return ParquetPart(plan.record_type, "json" if schemas is None else "typed", plan.compression,
                               exported_at=plan.exported_at,
                               schema=None if schemas is None else schemas.for_type(plan.record_type))
        columns = plan.rules.kept_columns(self.partition.columns) if plan.fmt == "csv" else None
        return PartEncoder(plan.fmt, plan.compression, columns, level=plan.gzip_level)  # type: ignore[arg-type]

    def _part_with_room(self, event: str | None) -> _Part:
        """The part to write `event`'s records to: the open one, or a new one when there is none or it is full."""
        folder = self._folder(event)
        part = self._open.pop(folder, None)
        if part is not None and part.encoder.records and part.encoder.raw_bytes >= self.plan.part_budget:
            self._open[folder] = part
            self._close(folder)
            part = None
        if part is None:
            self._make_room()
            name = part_name(folder, self.plan.run_id, self._parts.get(folder, 0), self.extension)
            uploader = BlockUploader(self.container, name, block_bytes=self.plan.block_bytes, pool=self.pool,
                                     max_in_flight=self.plan.max_in_flight, attempt=self.plan.attempt_tag)
            part = _Part(self._new_encoder(), uploader, event)
        self._open[folder] = part  # the most recently fed last
        return part

    def _make_room(self) -> None:
        """Before a part opens: at most MAX_OPEN_PARTS open, holding at most PART_MAX_BYTES of staged records."""
        if len(self._open) >= MAX_OPEN_PARTS:
            self._close(next(iter(self._open)))
        while self._open and sum(p.encoder.raw_bytes for p in self._open.values()) >= self.plan.part_budget:
            self._close(max(self._open, key=lambda folder: self._open[folder].encoder.raw_bytes))

    def _close(self, folder: str) -> None:
        part = self._open.pop(folder)
        encoder, uploader = part.encoder, part.uploader
        uploader.write(encoder.close().data)
        uploader.flush()  # a file of several blocks: its last block uploads while the part is recorded
        self.before_commit(uploader.name)
        written: WrittenFile = uploader.commit(_content_settings(self.plan), tier=self.plan.access_tier)
        self._parts[folder] = self._parts.get(folder, 0) + 1
        self.files.append(LandedFile(name=written.name, records=encoder.records, bytes=written.bytes,
                                     md5=written.md5_hex, content_md5=written.md5_base64,
                                     partition=self.partition.key or f"date={self.plan.export_date}"))

    def _write_lines(self, chunks: Iterator[bytes]) -> None:
        plan = self.plan
        # Parquet reads lines itself (Arrow's path where it can); records parsed here when the filters or the folders
        # needed them already are handed over, so that no record is parsed twice.
        rules = plan.rules
        parsed = plan.fmt == "parquet" and (rules.filters_events or rules.drops or plan.folders.splits_by_event)
        for lines in split_lines(chunks):
            for start in range(0, len(lines), FEED_LINES):
                routed = route_chunk(lines[start:start + FEED_LINES], plan.record_type, plan.rules,
                                     by_event=plan.folders.splits_by_event, parsed=parsed)
                for event, records in routed.items():
                    self._feed(event, records)

    def _feed(self, event: str | None, routed: Routed) -> None:
        done = 0
        while done < len(routed.lines):
            part = self._part_with_room(event)
            # At least 1, so a part always makes progress; CSV is counted by the rows it writes (issue 11).
            count = part.encoder.lines_within(routed.lines[done:], self.plan.part_budget - part.encoder.raw_bytes)
            end = done + count
            encoder = part.encoder
            if isinstance(encoder, PartEncoder):
                part.uploader.write(encoder.feed(routed.lines[done:end]).data)
            else:  # Parquet: the whole file is written when the part closes
                encoder.feed(routed.lines[done:end], _cut(routed.records, done, end), _cut(routed.names, done, end),
                             _cut(routed.times, done, end))
            done = end

    def _write_blocks(self, chunks: Iterator[bytes]) -> None:
        """JSONL: staged lines move as they are, a downloaded chunk at a time (never a line at a time)."""
        for block in split_blocks(chunks):
            while block:
                part = self._part_with_room(None)
                encoder = part.encoder
                assert isinstance(encoder, PartEncoder)
                end = cut_block(block, self.plan.part_budget - encoder.raw_bytes)  # at least one line
                part.uploader.write(encoder.feed_block(block[:end], block.count(b"\n", 0, end)).data)
                block = block[end:]


def _cut(values: list[Any] | None, start: int, end: int) -> list[Any] | None:
    return None if values is None else values[start:end]


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
    return ExportResult(files=[f for o in outputs for f in written[o.key]], received=sum(o.records for o in outputs))


def build_manifest(plan: ExportPlan, result: ExportResult, created_at: str, moment: datetime,
                   batches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The manifest: a batch's, or with `batches` (their ids and record counts) a coalesced run's, which names
    the run instead of a batch. `records_received` counts the run's records, `records_written` those its files
    hold (`records` too): the difference is what the destination's event filters left out."""
    head: dict[str, Any] = {"batch_id": plan.run_id} if batches is None else {"run_id": plan.run_id,
                                                                                "batches": batches}
    return {
        **head,
        "destination_id": plan.destination_id,
        "type": plan.record_type,
        "format": plan.fmt,
        "compression": plan.compression,
        **({"parquet_columns": plan.parquet_columns} if plan.fmt == "parquet" else {}),
        "records": result.records,
        "records_received": result.received,
        "records_written": result.records,
        "bytes": result.bytes,
        "files": [f.model_dump() for f in result.files],
        "batch_created_at" if batches is None else "run_created_at": created_at,
        "exported_at": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def write_manifest(container: ContainerClient, plan: ExportPlan, manifest: dict[str, Any]) -> str:
    name = manifest_name(plan.prefix, plan.record_type, plan.run_id)
    container.upload_blob(name, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), overwrite=True,
                          content_settings=ContentSettings(content_type="application/json"),
                          standard_blob_tier=tier_of(plan.access_tier))
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
