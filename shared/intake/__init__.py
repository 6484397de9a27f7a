"""Intake: what the platform posts, decoded (`body`: media type, gzip limits), validated record by record
(`records`, with `event_time` for names, times and identities and `json_errors` for parse errors in words),
a JSON array read an element at a time (`json_array`), each element staged as exact text (`array_elements`),
the CSV columns of each partition learned (`columns`), and the batch staged in control storage before the
202 (`accept`: `BodyIntake` validates a body, NDJSON or a JSON array, as it arrives, never holding it whole).

May import: control, formats, and the base modules (settings, errors, logging_setup).
"""
