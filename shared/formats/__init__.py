"""Formats: how records become file bytes. Exact JSON values, flattening, JSONL and CSV encoders, and the
cyclic-GC pause both parsers use (intake's too).

Pure (no I/O). May import: the base modules only.
"""
