"""Reading PostHog capture payloads: body encodings, the project token, clock skew and the
per-event rules.

Pure functions over plain data (no database, no Pydantic) because they run once per event on
the ingestion hot path.

Per-event drop rule: an event is dropped, and the rest of its batch kept, when it is not a JSON
object, has no non-empty string `event` (at most 400 characters), has no `distinct_id` (top-level
`distinct_id`, `$distinct_id` or `properties.distinct_id`; a string or number), has `properties`
that is neither absent, null nor an object, has a `timestamp` that cannot be read or lies more
than 23 hours in the future once clock skew is corrected, has a non-integer `offset`, or has a
`uuid` that is not a UUID string, is nested deeper than 254 levels, holds an unpaired surrogate or
an integer beyond 64 bits, or is a `$feature_flag_called` whose flag or response contains NUL.
NUL characters elsewhere in properties are stripped. Only a body that cannot be read at all
fails the request.
"""

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID, uuid4

import orjson

from experiments_service.errors import ParseError, PayloadTooLarge, ValidationError

MAX_EVENT_NAME_LENGTH = 400
# PostHog truncates distinct ids to 200 characters at capture.
MAX_DISTINCT_ID_LENGTH = 200
MAX_FLAG_VALUE_LENGTH = 400
# Events dated further ahead than this (after clock-skew correction) are dropped.
FUTURE_TOLERANCE = timedelta(hours=23)
# Epoch numbers at or above this are milliseconds (seconds would be past the year 5138).
_EPOCH_MILLIS_THRESHOLD = 100_000_000_000
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_COMPRESSIONS = ("gzip", "gzip-js")
_NUMERIC = re.compile(r"^-?\d+(?:\.\d+)?$")

NO_DATA_DETAIL = "No data found. Make sure to use a POST request when sending the payload in the body of the request."


@dataclass(slots=True)
class CapturedEvent:
    """One accepted event, ready to store, with the person changes it carries."""

    uuid: UUID
    event: str
    distinct_id: str
    timestamp: datetime
    properties: dict[str, Any]
    flag_key: str | None
    flag_response: str | None
    person_set: dict[str, Any] | None = None
    person_set_once: dict[str, Any] | None = None
    person_unset: list[str] = field(default_factory=list)
    # The other distinct id of `$identify` (`$anon_distinct_id`), `$create_alias` or
    # `$merge_dangerously` (`alias`): its person merges into this event's person.
    merge_from: str | None = None

    @property
    def changes_person(self) -> bool:
        return bool(self.person_set or self.person_set_once or self.person_unset or self.merge_from is not None)


# --- the body -------------------------------------------------------------------------------

def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip (or zlib) body, refusing output beyond `max_bytes` so a bomb cannot expand."""
    inflater = zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, max_bytes + 1)
    except zlib.error as error:
        raise ParseError(f"Malformed request data: invalid gzip body ({error}).", code="invalid_payload") from None
    if len(inflated) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge("Request body is too large once decompressed.")
    if not inflater.eof:
        raise ParseError("Malformed request data: invalid gzip body (truncated).", code="invalid_payload")
    return inflated


def _base64(data: bytes) -> bytes:
    """PostHog clients send base64 with or without padding, standard or URL-safe; a form body
    that was not URL-encoded turns `+` into spaces, which are turned back."""
    compact = re.sub(rb"\s+", b"", data.replace(b" ", b"+"))
    padded = compact + b"=" * (-len(compact) % 4)
    try:
        if b"-" in padded or b"_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("Malformed request data: the body is neither JSON nor base64.", code="invalid_payload") from None


def decode_body(
    raw: bytes,
    *,
    content_type: str,
    content_encoding: str,
    query: Mapping[str, str],
    max_bytes: int,
) -> Any:
    """Turn a capture body (JSON, gzip, base64 or form `data=`) into its JSON value."""
    compression = (query.get("compression") or "").lower()
    if "gzip" in content_encoding.lower() or compression in _GZIP_COMPRESSIONS or raw.startswith(_GZIP_MAGIC):
        raw = _gunzip(raw, max_bytes)
    if "application/x-www-form-urlencoded" in content_type.lower() or raw.startswith(b"data="):
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        compression = (form.get("compression") or compression).lower()
        raw = (form.get("data") or "").encode()
    if compression == "lz64":
        raise ValidationError("lz64 compression is not supported; send gzip or plain JSON.", code="invalid_payload")
    raw = raw.strip()
    if not raw:
        raise ValidationError(NO_DATA_DETAIL, code="no_data")
    if raw[:1] not in (b"{", b"["):
        raw = _base64(raw)
        if raw.startswith(_GZIP_MAGIC):
            raw = _gunzip(raw, max_bytes)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        strict_error = error
    try:
        # posthog-python serialises float NaN/Infinity as bare `NaN`/`Infinity`: store them as null.
        # Lone surrogates and out-of-range integers also get through; they are refused per event.
        return json.loads(raw, parse_constant=lambda _: None)
    except (ValueError, TypeError, RecursionError):
        raise ParseError(f"Malformed request data: {strict_error}", code="invalid_payload") from None


def raw_events(payload: Any) -> list[Any]:
    """The events of a payload: a `batch` list, a bare list, or one event object."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        raise ValidationError(
            f"Malformed request data: expected a JSON object or list, got {type(payload).__name__}.",
            code="invalid_payload",
        )
    if "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise ValidationError("Malformed request data: `batch` must be a list.", code="invalid_payload", attr="batch")
        return batch
    return [payload]


def _token_of(candidate: Any) -> Any:
    if not isinstance(candidate, dict):
        return None
    token = candidate.get("api_key") or candidate.get("token") or candidate.get("$token")
    if token:
        return token
    properties = candidate.get("properties")
    return properties.get("token") if isinstance(properties, dict) else None


def request_token(payload: Any, query: Mapping[str, str]) -> Any:
    """The project API key: body `api_key`/`token`, `?token=`, or the first event's key."""
    token = _token_of(payload) or query.get("token") or query.get("api_key")
    if token:
        return token
    events = payload if isinstance(payload, list) else payload.get("batch") if isinstance(payload, dict) else None
    if isinstance(events, list) and events:
        return _token_of(events[0])
    return None


# --- time -----------------------------------------------------------------------------------

def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 text or epoch seconds/milliseconds (number or digits) as aware UTC; None if unreadable."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, str) and _NUMERIC.match(value):
            value = float(value)
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) >= _EPOCH_MILLIS_THRESHOLD else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def request_sent_at(payload: Any, query: Mapping[str, str]) -> datetime | None:
    """When the client sent the request (`sent_at` in the body, or posthog-js's `?_=` millis)."""
    value = query.get("_") or (payload.get("sent_at") if isinstance(payload, dict) else None)
    if value in (None, ""):
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        shown = repr(value)[:100] if isinstance(value, str | int | float) else type(value).__name__
        raise ValidationError(f"Malformed request data, invalid sent at: {shown}", code="invalid_payload", attr="sent_at")
    return parsed


def event_time(raw: dict[str, Any], properties: dict[str, Any], now: datetime, sent_at: datetime | None) -> datetime | None:
    """PostHog's clock-skew rule: with `sent_at`, shift the client's timestamp onto our clock;
    without a timestamp, `offset` milliseconds before now; otherwise the timestamp, else now."""
    offset = raw.get("offset")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
        return None
    timestamp = raw.get("timestamp")
    try:
        if timestamp not in (None, ""):
            moment = parse_timestamp(timestamp)
            if moment is None:
                return None
            if sent_at is not None and not properties.get("$ignore_sent_at"):
                moment = now - (sent_at - moment)
        elif offset is not None:
            moment = now - timedelta(milliseconds=offset)
        else:
            moment = now
    except OverflowError:  # the correction leaves the representable years
        return None
    if moment - now > FUTURE_TOLERANCE:
        return None
    return moment


# --- one event ------------------------------------------------------------------------------

def _distinct_id(raw: dict[str, Any], properties: dict[str, Any]) -> str | None:
    """PostHog's precedence: `$distinct_id`, then `properties.distinct_id`, then `distinct_id`."""
    value = raw.get("$distinct_id")
    if value is None:
        value = properties.get("distinct_id")
    if value is None:
        value = raw.get("distinct_id")
    if type(value) is not str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        value = str(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:MAX_DISTINCT_ID_LENGTH] or None


def _without_nul(value: Any) -> Any:
    """Person properties lose NUL characters: PostgreSQL's jsonb, used to merge them, cannot hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _merged_person_change(raw: dict[str, Any], properties: dict[str, Any], key: str) -> dict[str, Any] | None:
    """`properties.$set` with the top-level `$set` (sent by `$identify` and the SDKs' `set()`) on top."""
    nested = properties.get(key)
    top_level = raw.get(key)
    if nested is None and top_level is None:
        return None
    if isinstance(top_level, dict) and top_level:
        change = properties[key] = {**nested, **top_level} if isinstance(nested, dict) else dict(top_level)
    elif isinstance(nested, dict) and nested:
        change = nested
    else:
        return None
    return _without_nul(change) if b"\\u0000" in orjson.dumps(change) else change


MERGE_EVENTS = ("$identify", "$create_alias", "$merge_dangerously")


def _merge_from(name: str, properties: dict[str, Any]) -> str | None:
    """The distinct id a merge event names, as PostHog reads it (`String(value)`, truncated)."""
    if name == "$identify":
        if "$anon_distinct_id" not in properties:
            return None
        value = properties["$anon_distinct_id"]
    elif name in MERGE_EVENTS:
        value = properties.get("alias")
        if not value:
            return None
    else:
        return None
    if value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return None  # an object or a list: PostHog's `String()` of it is an illegal id anyway
    return text.replace("\x00", "")[:MAX_DISTINCT_ID_LENGTH]


def _flag_value(value: Any) -> str | None:
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text if len(text) <= MAX_FLAG_VALUE_LENGTH else None


@dataclass(frozen=True, slots=True)
class DroppedEvent:
    """An event that is not stored, and why: `code` labels the drop metric, `reason` is logged."""

    code: str
    reason: str


def normalise_event(raw: Any, now: datetime, sent_at: datetime | None) -> CapturedEvent | DroppedEvent:
    """Validate one raw event and shape it for storage, or say why it is dropped."""
    if not isinstance(raw, dict):
        return DroppedEvent("not_an_object", "not an object")
    try:
        # What the JSON columns cannot hold: nesting past 254 levels, unpaired surrogates,
        # integers beyond 64 bits. One C call, and its output tells whether NUL needs stripping.
        encoded = orjson.dumps(raw)
    except orjson.JSONEncodeError as error:
        return DroppedEvent("unstorable_json", f"cannot be stored as JSON: {error}")
    name = raw.get("event")
    if not isinstance(name, str):
        return DroppedEvent("missing_event_name", "no event name")
    name = name.replace("\x00", "")
    if not name or len(name) > MAX_EVENT_NAME_LENGTH:
        return DroppedEvent("invalid_event_name", "event name empty or too long")
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        return DroppedEvent("invalid_properties", "properties is not an object")
    distinct_id = _distinct_id(raw, properties)
    if distinct_id is None:
        return DroppedEvent("missing_distinct_id", "no distinct_id")
    timestamp = event_time(raw, properties, now, sent_at)
    if timestamp is None:
        return DroppedEvent("invalid_timestamp", "unreadable or future timestamp, or invalid offset")
    raw_uuid = raw.get("uuid")
    if raw_uuid is None:
        event_uuid = uuid4()
    elif isinstance(raw_uuid, str):
        try:
            event_uuid = UUID(raw_uuid)
        except ValueError:
            return DroppedEvent("invalid_uuid", "uuid is not a UUID")
    else:
        return DroppedEvent("invalid_uuid", "uuid is not a UUID")
    is_flag_call = name == "$feature_flag_called"
    flag_key = flag_response = None
    if is_flag_call:
        flag_key = _flag_value(properties.get("$feature_flag"))
        flag_response = _flag_value(properties.get("$feature_flag_response"))
        if "\x00" in (flag_key or "") or "\x00" in (flag_response or ""):
            # Stripping could turn it into another flag's (or variant's) exposure.
            return DroppedEvent("nul_in_flag", "$feature_flag or $feature_flag_response contains a NUL character")
    person_set = _merged_person_change(raw, properties, "$set")
    person_set_once = _merged_person_change(raw, properties, "$set_once")
    unset = properties.get("$unset")
    merge_from = _merge_from(name, properties)
    if properties.get("$process_person_profile") is False:
        # Personless events (the SDKs send them without a distinct id of the user's) touch no person.
        person_set = person_set_once = unset = merge_from = None
    if b"\\u0000" in encoded:
        properties = _without_nul(properties)
    return CapturedEvent(
        uuid=event_uuid,
        event=name,
        distinct_id=distinct_id,
        timestamp=timestamp,
        properties=properties,
        flag_key=flag_key,
        flag_response=flag_response,
        person_set=person_set,
        person_set_once=person_set_once,
        person_unset=[key.replace("\x00", "") for key in unset if isinstance(key, str)] if isinstance(unset, list) else [],
        merge_from=merge_from,
    )
