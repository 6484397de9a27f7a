"""Formats: how records become file bytes. Exact JSON values, flattening, JSONL and CSV encoders.

Pure (no I/O). May import: the base modules only.
"""
