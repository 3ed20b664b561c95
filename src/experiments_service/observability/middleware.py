"""Per-request observability: a request id, an access log line and the request metrics.

`RequestObservabilityMiddleware` wraps everything else (so 413s and other early answers are seen
too); `RouteRecorder` sits just outside the router and notes which route template matched and
the project id in the path. They share one `RequestInfo` through the ASGI scope, because other
middleware may hand the router a copy of the scope.
"""

import logging
import random
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from experiments_service.observability import metrics
from experiments_service.observability.logs import access_logger, request_id_var

log = logging.getLogger(__name__)

SCOPE_KEY = "experiments.request"
REQUEST_ID_HEADER = b"x-request-id"
# Probes and scrapes arrive every few seconds: counted in the metrics, logged only when they fail.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# A client's request id is kept when it is short and plain; anything else gets a fresh one.
_ACCEPTABLE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    route: str | None = None
    project_id: int | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("request_info", default=None)


def note_project(project_id: int) -> None:
    """Record the project a request turned out to be for (flag evaluation and capture learn it
    from the project API key, not the path)."""
    info = _current.get()
    if info is not None:
        info.project_id = project_id


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _ACCEPTABLE_ID.fullmatch(value):
                return value.decode()
            break
    # 128 random bits from the process's PRNG: unique enough to correlate, and no system call.
    return f"{random.getrandbits(128):032x}"


class RequestObservabilityMiddleware:
    """Outermost: give each request an id (`X-Request-ID`, echoed), time it, count it, log it."""

    def __init__(self, app: ASGIApp, static_routes: Iterable[str] = ()):
        self.app = app
        # Paths answered ahead of the router (the SDK endpoints): each is its own template.
        self.static_routes = frozenset(static_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = RequestInfo(_request_id(scope))
        scope[SCOPE_KEY] = info
        info_token = _current.set(info)
        id_token = request_id_var.set(info.request_id)
        header = (REQUEST_ID_HEADER, info.request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")  # here the line still carries the request id
            raise
        finally:
            seconds = time.perf_counter() - started
            route = info.route or self._static_route(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            logger = access_logger()
            if logger is not None and (status >= 400 or route not in _QUIET_ROUTES):
                logger.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    project_id=info.project_id,
                )
            request_id_var.reset(id_token)
            _current.reset(info_token)

    def _static_route(self, scope: Scope) -> str:
        path = scope["path"]
        if path in self.static_routes or path + "/" in self.static_routes:
            return path if path.endswith("/") else path + "/"
        return "unmatched"


class RouteRecorder:
    """Innermost: after routing, note the matched route's template and the path's project id."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            info = scope.get(SCOPE_KEY)
            route = scope.get("route")
            if info is not None and route is not None:
                info.route = getattr(route, "path", None)
                project_id = scope.get("path_params", {}).get("project_id")
                if info.project_id is None and project_id is not None:
                    info.project_id = _as_int(project_id)


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
