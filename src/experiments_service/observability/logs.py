"""Structured logging with structlog: JSON lines in production, readable lines on a terminal.

Every record, the service's own and those of the libraries it uses (uvicorn, SQLAlchemy, Alembic),
goes through one processor chain: level, UTC timestamp, the current request id, secrets masked.
The per-request access line skips the standard library (a `LogRecord` costs several times what
rendering the line does) and is written by a structlog logger straight to stderr.
stdout stays free for the CLI's JSON output.
"""

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

import orjson
import structlog

from experiments_service.auth.keys import mask_key
from experiments_service.settings import Settings

# The request being served by this task (set by the request middleware).
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Personal (`phx_`) and project (`phc_`) API keys, wherever they appear in a log line.
_KEY_PATTERN = re.compile(r"ph[xc]_[A-Za-z0-9_\-]{8,}")

EventDict = MutableMapping[str, Any]


def _mask(text: str) -> str:
    return _KEY_PATTERN.sub(lambda match: mask_key(match.group(0)), text) if "ph" in text else text


def mask_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Replace API keys in every string value with their masked form (`phx_...abcd`)."""
    for key, value in event_dict.items():
        if type(value) is str:
            event_dict[key] = _mask(value)
    return event_dict


class _UTCTimestamp:
    """`timestamp` as ISO 8601 UTC with microseconds; the date and time part is formatted once
    per second (structlog's TimeStamper formats a datetime on every line, several times slower)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


def add_request_id(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _json_renderer() -> structlog.processors.JSONRenderer:
    return structlog.processors.JSONRenderer(serializer=lambda value, **_: orjson.dumps(value, default=str).decode())


def _wants_json(settings: Settings, stream: TextIO) -> bool:
    if settings.log_format == "auto":
        return not (hasattr(stream, "isatty") and stream.isatty())
    return settings.log_format == "json"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it), or a fixed stream."""

    def __init__(self, stream: TextIO | None):
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class _Writer:
    """structlog's output for the access line: one `write` per line, flushed, to stderr or a stream."""

    def __init__(self, stream: TextIO | None):
        self._fixed = stream

    def msg(self, message: str) -> None:
        stream = self._fixed or sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


_access_logger: Any = None


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route all logging through one handler on the root logger, in the format and at the level
    the settings ask for; called once per process (again in tests, which pass a `stream`)."""
    level = logging.getLevelNamesMapping()[settings.log_level]
    renderer = _json_renderer() if _wants_json(settings, stream or sys.stderr) else structlog.dev.ConsoleRenderer(colors=False)
    shared = [
        structlog.stdlib.add_log_level,
        _UTCTimestamp(),
        add_request_id,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
    )
    handler = _StderrHandler(stream)
    handler.setFormatter(formatter)
    handler._experiments_service = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for existing in [h for h in root.handlers if getattr(h, "_experiments_service", False)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter stays at WARNING unless the operator asks for DEBUG.
    for name in ("sqlalchemy", "asyncio", "aiosqlite", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)

    global _access_logger
    _access_logger = None
    if settings.access_log and level <= logging.INFO:
        _access_logger = structlog.wrap_logger(
            _Writer(stream),
            processors=[*shared, mask_secrets, renderer],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=True,
        )


def access_logger() -> Any:
    """The access-line logger, or None when access logging is off (or logging is not configured)."""
    return _access_logger
