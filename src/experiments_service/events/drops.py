"""Why a captured event was dropped, for the `experiments_events_dropped_total` metric.

`parsing.normalise_event` only says *that* an event is refused; this names the first rule it
broke, in the same order. It runs for dropped events only, so valid batches pay nothing.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from experiments_service.events.parsing import MAX_EVENT_NAME_LENGTH, _distinct_id, event_time


def drop_reason(raw: Any, now: datetime, sent_at: datetime | None) -> str:
    if not isinstance(raw, dict):
        return "not_an_object"
    name = raw.get("event")
    if not isinstance(name, str) or not name.replace("\x00", ""):
        return "missing_event_name"
    if len(name.replace("\x00", "")) > MAX_EVENT_NAME_LENGTH:
        return "event_name_too_long"
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        return "invalid_properties"
    if _distinct_id(raw, properties) is None:
        return "missing_distinct_id"
    if event_time(raw, properties, now, sent_at) is None:
        return "invalid_timestamp"
    raw_uuid = raw.get("uuid")
    if raw_uuid is not None:
        try:
            UUID(raw_uuid)
        except (TypeError, ValueError, AttributeError):
            return "invalid_uuid"
    return "duplicate_in_batch"
