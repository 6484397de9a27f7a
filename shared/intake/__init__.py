"""Intake: what the platform posts, decoded (media type, gzip limits), validated record by record
(event time, names, identities, JSON error positions), and staged in control storage before the 202.

May import: control, formats, and the base modules (settings, errors, logging_setup).
"""
