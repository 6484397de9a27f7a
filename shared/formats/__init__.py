"""Formats: how records become file bytes, and where files go. Exact JSON values (`exact_json`), the one rule that
names columns (`flatten`, which intake follows too), where a record keeps its name, time, identity and insert id
(`record_fields`, intake's rules too), the CSV encoder (`csv_encoding`, with `csv_cells`, `csv_shapes` and
`csv_columns`), JSONL, gzip and parts (`serialization`), zstd frames (`zstd_frames`), Parquet (`parquet_part`,
with `parquet_schema`, `parquet_values` and `parquet_columns`), the destination's filters (`record_filters`,
applied by `record_routing`) and folders (`layouts`), and the cyclic-GC pause the parsers use (`gc_pause`).

Pure (no I/O: a typed Parquet part asks its caller for the destination's schema). May import: the base modules only.
"""
