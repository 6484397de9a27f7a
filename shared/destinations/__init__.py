"""Destinations: what a customer configures (models, endpoint and SAS and connection-string checks),
the service that saves them with their secrets, the storage clients built for them, the probe, the
plain-words description of a destination's failures, and pausing one (`pauses`, issue 17).

May import: control, formats, secrets, and the base modules.
"""
