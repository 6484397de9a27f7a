"""Formats: how records become file bytes. Exact JSON values (`exact_json`), the one rule that names CSV
columns (`flatten`, which intake follows too), the CSV encoder (`csv_encoding`, with `csv_cells`, `csv_shapes`
and `csv_columns`), JSONL, gzip and parts (`serialization`), and the cyclic-GC pause both parsers use
(`gc_pause`).

Pure (no I/O). May import: the base modules only.
"""
