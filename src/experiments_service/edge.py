"""What every request passes before it reaches routing, parsing or authentication.

- The body limit is counted while the body streams in (chunked or not; compressed bodies are
  counted as sent, and again once inflated by the SDK endpoints), so an oversized upload is
  refused with 413 after `max_body_bytes`, never read whole.
- API bodies and JSON query parameters are decoded once here and held to `JsonLimits`
  (depth, string length, NUL, unpaired surrogates, NaN): a 400 that names the problem instead
  of a recursion error or a database refusal deep inside a handler. The SDK endpoints
  (`/flags`, `/decide`, capture) decode their own bodies, in their own encodings.
"""

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from experiments_service.errors import APIError, ParseError, PayloadTooLarge, ValidationError
from experiments_service.json_limits import JsonLimits, JsonProblem
from experiments_service.middleware import sdk_cors_headers

UTF8_DETAIL = "JSON parse error - the body is not valid UTF-8."


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body outgrows the limit; an HTTPException so that the
    framework's body reader passes it on (to the 413 handler) instead of calling it a parse error."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


def problem_error(problem: JsonProblem) -> APIError:
    if problem.code == "parse_error":  # NaN and infinities: not JSON at all
        return ParseError(problem.detail)
    return ValidationError(problem.detail, code=problem.code, attr=problem.attr)


def check_json_text(raw: bytes | str, limits: JsonLimits) -> None:
    """Raise the 400 for JSON text that breaks the limits; text that is not JSON at all is left
    to the handler's own parser, which answers its usual parse error.

    The standard parser is the one the framework uses, so what is checked is what the handler
    gets (orjson would read 2**64 + 1 as a float, while the handler gets an integer that no JSON
    column of ours can be re-encoded from).
    """
    text = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValidationError(
            f"JSON nested deeper than {limits.max_depth} levels is not accepted.", code="max_depth"
        ) from None
    except UnicodeDecodeError:
        raise ParseError(UTF8_DETAIL) from None
    except ValueError:
        return
    found = limits.problem(value, text)
    if found is not None:
        raise problem_error(found)


def _is_json(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # the framework reads a body without a content type as JSON


def check_query(query_string: bytes, limits: JsonLimits) -> None:
    """NUL in any query parameter, and the limits in a JSON-valued one (`?events=[...]`)."""
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8"):
        if "\x00" in name or "\x00" in value:
            raise ValidationError("Null characters are not allowed.", code="null_characters_not_allowed", attr=name)
        if value[:1] in ("[", "{"):
            try:
                check_json_text(value, limits)
            except APIError as error:
                error.attr = name
                raise


class RequestLimitsMiddleware:
    """The streaming body limit on every route; JSON limits on every route but `sdk_paths`."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, limits: JsonLimits, sdk_paths: Iterable[str] = ()):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits = limits
        self.sdk_paths = frozenset(sdk_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if self._declared_size(scope) > self.max_body_bytes:
                raise BodyTooLarge()
            receive = self._counting(receive)
            if scope["path"] not in self.sdk_paths:
                receive = await self._checked(scope, receive)
            await self.app(scope, receive, tracking_send)
        except (BodyTooLarge, APIError) as error:
            if started:
                raise
            # Browsers read an SDK endpoint's error only with its CORS headers.
            cors = sdk_cors_headers(scope) if scope["path"] in self.sdk_paths else {}
            await _send_error(send, error if isinstance(error, APIError) else PayloadTooLarge(), cors)

    @staticmethod
    def _declared_size(scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _counting(self, receive: Receive) -> Receive:
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    raise BodyTooLarge()
            return message

        return counted

    async def _checked(self, scope: Scope, receive: Receive) -> Receive:
        """Read the (bounded) body, hold it and the query to the limits, then replay it."""
        check_query(scope.get("query_string", b""), self.limits)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and self._declared_size(scope) == 0:
            return receive
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.strip() and _is_json(scope.get("headers", ())):
            check_json_text(body, self.limits)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


async def _send_error(send: Send, error: APIError, extra_headers: dict[str, str]) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in {**(error.headers or {}), **extra_headers}.items()
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
