"""CSV rows from staged records: a fast, exact RFC 4180 encoder.

Records with the same top-level keys are written a column at a time (``csv_columns``); rows of a record shape
already seen are written with C-level calls only (``csv_shapes``). Anything irregular takes the general row
path (``csv_cells.flatten_record``), whose output is byte for byte what the ``csv`` module writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.formats.csv_cells import flatten_record, quote_row
from shared.formats.csv_columns import MIN_COLUMNAR_GROUP, columnar_rows
from shared.formats.csv_shapes import SHAPE_MISMATCH, RowShape
from shared.formats.exact_json import RecordError, parse_chunk
from shared.formats.gc_pause import cyclic_gc_paused

_RECORDS_AT_ONCE = 500  # parsed together: amortises calls, stays in cache, bounds memory
_MAX_SHAPES = 64  # row shapes one encoder learns; records of other shapes take the generic path
_MAX_SHAPES_PER_KEYS = 8  # shapes tried for one set of top-level keys before the generic path


class CsvEncoder:
    """CSV rows (RFC 4180: comma, double quotes, CRLF, UTF-8 without BOM) in a fixed column order.

    ``columns`` is the file's stable column order (the caller's sorted union of the batch's
    flattened keys). A record lacking a column gets an empty cell; a record with a column not in
    ``columns`` is an error, never dropped. Cells are quoted as ``csv.writer`` quotes them.

    Speed: the encoder learns the shapes of the records it meets (``RowShape``) and writes the
    records of a known shape without a Python loop over their values.
    """

    def __init__(self, columns: Sequence[str]):
        self._columns = tuple(columns)
        self._column_set = frozenset(self._columns)
        if len(self._column_set) != len(self._columns):
            raise ValueError("CSV columns must be unique")
        self._blanks = ("",) * len(self._columns)
        self._shapes: dict[tuple[str, ...], list[RowShape]] = {}
        self._shapes_left = _MAX_SHAPES if len(self._columns) > 1 else 0

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    def header(self) -> bytes:
        return (quote_row(list(self._columns)) + "\r\n").encode()

    def encode(self, lines: Iterable[bytes]) -> tuple[bytes, int]:
        """The CSV rows of a chunk of staged lines, and how many records they hold.

        Raises ``RecordError`` (a ``ValueError``) naming the record's index within the chunk.
        """
        batch = lines if isinstance(lines, Sequence) else list(lines)
        rows: list[str] = []
        with cyclic_gc_paused():
            for start in range(0, len(batch), _RECORDS_AT_ONCE):
                records = parse_chunk(batch[start : start + _RECORDS_AT_ONCE], first_index=start)
                try:
                    rows.extend(self._rows(records))
                except (ValueError, TypeError):
                    self._raise_for_bad_record(records, start)
                    raise
        if not rows:
            return b"", 0
        rows.append("")  # the last row's line end
        return "\r\n".join(rows).encode(), len(rows) - 1

    def _rows(self, records: list[dict[str, Any]]) -> list[str]:
        """The rows of parsed records, in order: a column at a time for each group of records with the
        same top-level keys (``csv_columns``), row by row (``_row``) for a group it does not take."""
        if len(self._columns) < 2:  # a lone empty cell is written '""': row by row
            return list(map(self._row, records))
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, keys in enumerate(map(tuple, records)):
            group = groups.get(keys)
            if group is None:
                groups[keys] = [index]
            else:
                group.append(index)
        if len(groups) == 1:
            return list(self._group_rows(records))
        rows = [""] * len(records)
        for indexes in groups.values():
            list(map(rows.__setitem__, indexes, self._group_rows(list(map(records.__getitem__, indexes)))))
        return rows

    def _group_rows(self, group: list[dict[str, Any]]) -> Iterable[str]:
        if len(group) >= MIN_COLUMNAR_GROUP:
            rows = columnar_rows(group, self._columns, self._column_set)
            if rows is not None:
                return rows
        return map(self._row, group)  # which raises for a column not in the header, naming it

    def _row(self, record: dict[str, Any]) -> str:
        """One CSV row without its line end."""
        keys = tuple(record)
        shapes = self._shapes.get(keys)
        if shapes is not None:
            for shape in shapes:
                try:
                    line = shape.row(record)
                except SHAPE_MISMATCH:
                    continue
                if line is not None:
                    return line
        line = self._generic_row(record)
        if self._shapes_left and (shapes is None or len(shapes) < _MAX_SHAPES_PER_KEYS):
            self._shapes_left -= 1  # a shape that cannot be learned counts too: stop trying
            learned = RowShape.of(record, self._columns)
            if learned is not None:
                self._shapes.setdefault(keys, []).append(learned)
        return line

    def _generic_row(self, record: Mapping[str, Any]) -> str:
        cells = flatten_record(record)
        if not cells.keys() <= self._column_set:
            unknown = ", ".join(repr(name) for name in sorted(cells.keys() - self._column_set))
            raise ValueError(f"the record has columns not in the file's header: {unknown}")
        return quote_row(list(map(cells.get, self._columns, self._blanks)))

    def _raise_for_bad_record(self, records: list[dict[str, Any]], first_index: int) -> None:
        for index, record in enumerate(records, start=first_index):
            try:
                self._generic_row(record)
            except (ValueError, TypeError) as exc:
                raise RecordError(index, f"record {index + 1} of the chunk: {exc}") from exc
