"""Where an analytics record keeps its event name, event time and user identity, and what that time is.

The rules live in ``shared.formats.record_fields``, which the export's core Parquet columns follow too (one rule
per concept); intake reads them through this module. ``shared.intake.records`` uses them to validate and
partition a batch.
"""

from shared.formats.record_fields import (
    EVENT_NAME_KEYS,
    EVENT_TIME_KEYS,
    MAX_YEAR,
    MIN_YEAR,
    PROFILE_IDENTITY_KEYS,
    PROPERTIES_IDENTITY_KEYS,
    PROPERTIES_TIME_KEYS,
    US_PER_HOUR,
    EventTimeError,
    epoch_microseconds,
    find_event_name,
    find_event_time,
    find_profile_identity,
    parse_event_time,
    partition_key_for_event_time,
    partition_key_for_microseconds,
)

__all__ = [
    "EVENT_NAME_KEYS", "EVENT_TIME_KEYS", "MAX_YEAR", "MIN_YEAR", "PROFILE_IDENTITY_KEYS", "PROPERTIES_IDENTITY_KEYS",
    "PROPERTIES_TIME_KEYS", "US_PER_HOUR", "EventTimeError", "epoch_microseconds", "find_event_name",
    "find_event_time", "find_profile_identity", "parse_event_time", "partition_key_for_event_time",
    "partition_key_for_microseconds",
]
