"""Control storage: the app's own blobs (destinations, staged batches, batch state), leases, and the
due index that says which batches to export next. Batch state is a typed model (`batch_state`) that
changes only through the named transitions in `transitions`. Since issue 17 also each destination's failing
streak (`destination_activity`) and the alert outbox (`alerts_outbox`).

May import: the base modules (settings, errors, logging_setup) only.
"""
