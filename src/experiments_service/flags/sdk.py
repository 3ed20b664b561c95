"""`/flags` and `/decide`: what SDKs send, how it is evaluated, and the versioned answers.

The hot path reads flag definitions from memory (flags/cache.py) and renders with orjson.
The database is touched only when the request needs it: a person-property condition the
request did not supply a value for (one indexed lookup of the stored person), or a flag with
experience continuity (read, and on first identify write, the hash-key override).
"""

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from fastapi import Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from experiments_service.auth.dependencies import authorize, presented_key_hash
from experiments_service.db import Database
from experiments_service.errors import APIError, InvalidProjectAPIKey, ParseError, ValidationError
from experiments_service.events.parsing import decode_body
from experiments_service.flags.cache import ProjectFlags, flag_cache
from experiments_service.flags.evaluation import EvaluationContext, FlagResult
from experiments_service.flags.repository import FlagRepository
from experiments_service.middleware import read_body_within, sdk_cors_headers

log = logging.getLogger(__name__)

# User agents of server-side SDKs (served `server` flags); browsers and mobile SDKs are clients.
_SERVER_AGENTS = ("posthog-python", "posthog-node", "posthog-go", "posthog-ruby", "posthog-php", "posthog-java",
                  "posthog-dotnet", "posthog-elixir", "posthog-rs", "posthog-server")  # fmt: skip
_CLIENT_AGENTS = ("mozilla", "posthog-js", "posthog-android", "posthog-ios", "posthog-react-native", "posthog-flutter")


@dataclass(frozen=True, slots=True)
class FlagsRequest:
    token: str | None
    distinct_id: str
    groups: dict[str, str]
    person_properties: dict[str, Any]
    group_properties: dict[str, dict[str, Any]]
    anon_distinct_id: str | None
    device_id: str | None
    flag_keys: list[str] | None
    evaluation_contexts: list[str] | None
    runtime: str | None


# --- reading the fields ----------------------------------------------------------------------

def _first(body: dict[str, Any], *names: str) -> Any:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return None


def _identifier(value: Any, attr: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise ValidationError(f"The {attr} field is missing from the request.", code="required", attr=attr)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"{attr} must be a string or a number.", code="invalid", attr=attr)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _object(value: Any, attr: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{attr} must be an object.", code="invalid", attr=attr)
    return value


def _string_list(value: Any, attr: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"{attr} must be a list of strings.", code="invalid", attr=attr)
    return value


def _runtime(body: dict[str, Any], user_agent: str) -> str | None:
    declared = body.get("evaluation_runtime")
    if declared is not None:
        if declared not in ("server", "client", "all"):
            raise ValidationError("evaluation_runtime must be one of server, client, all.", code="invalid_choice", attr="evaluation_runtime")
        return None if declared == "all" else declared
    agent = user_agent.lower()
    if any(name in agent for name in _SERVER_AGENTS):
        return "server"
    if any(name in agent for name in _CLIENT_AGENTS):
        return "client"
    return None


def parse_flags_request(body: Any, query_token: str | None, user_agent: str) -> FlagsRequest:
    if not isinstance(body, dict):
        raise ParseError("Malformed request: the body must be a JSON object.")
    token = _first(body, "token", "api_key", "$token") or query_token
    if token is not None and not isinstance(token, str):
        raise InvalidProjectAPIKey()
    groups = {}
    for name, key in _object(_first(body, "groups", "$groups"), "groups").items():
        groups[name] = _identifier(key, "groups", required=True)
    group_properties = _object(_first(body, "group_properties", "$group_properties"), "group_properties")
    for name, properties in group_properties.items():
        _object(properties, "group_properties")
    return FlagsRequest(
        token=token,
        distinct_id=_identifier(_first(body, "distinct_id", "$distinct_id"), "distinct_id", required=True),
        groups=groups,
        person_properties=_object(_first(body, "person_properties", "$properties"), "person_properties"),
        group_properties=group_properties,
        anon_distinct_id=_identifier(_first(body, "anon_distinct_id", "$anon_distinct_id"), "anon_distinct_id", required=False),
        device_id=_identifier(_first(body, "device_id", "$device_id"), "device_id", required=False),
        flag_keys=_string_list(_first(body, "flag_keys_to_evaluate", "flag_keys"), "flag_keys_to_evaluate"),
        evaluation_contexts=_string_list(
            _first(body, "evaluation_contexts", "evaluation_environments"), "evaluation_contexts"
        ),
        runtime=_runtime(body, user_agent),
    )


# --- evaluating ------------------------------------------------------------------------------

async def _context(db: Database, project: ProjectFlags, flags_request: FlagsRequest) -> EvaluationContext:
    """Fill in stored person properties and continuity overrides, only when they matter."""
    person_properties = flags_request.person_properties
    hash_key_overrides: dict[str, str] = {}
    needed = project.person_properties_needed(flags_request.flag_keys)
    missing_properties = bool(needed) and not needed <= person_properties.keys()
    continuity = project.continuity_flags(flags_request.flag_keys)
    if missing_properties or continuity:
        async with db.transaction() as session:
            repo = FlagRepository(session, project.project_id)
            if missing_properties:
                stored = await repo.person_properties(flags_request.distinct_id)
                if stored:
                    person_properties = {**stored, **person_properties}
            if continuity:
                hash_key_overrides = await repo.hash_key_overrides(flags_request.distinct_id)
                anon = flags_request.anon_distinct_id
                missing = [key for key in continuity if key not in hash_key_overrides]
                if anon and missing and anon != flags_request.distinct_id:
                    await repo.add_hash_key_overrides(flags_request.distinct_id, anon, missing)
                    hash_key_overrides = {**hash_key_overrides, **{key: anon for key in missing}}
    return EvaluationContext(
        distinct_id=flags_request.distinct_id,
        person_properties=person_properties,
        groups=flags_request.groups,
        group_properties=flags_request.group_properties,
        hash_key_overrides=hash_key_overrides,
        anon_distinct_id=flags_request.anon_distinct_id,
        device_id=flags_request.device_id,
    )


async def evaluate_flags_request(request: Request, body: Any) -> tuple[ProjectFlags, dict[str, FlagResult], bool]:
    """Authenticate by project token and evaluate; returns the project, results and whether any failed."""
    flags_request = parse_flags_request(body, request.query_params.get("token"), request.headers.get("user-agent", ""))
    if not flags_request.token:
        raise InvalidProjectAPIKey()
    cache = flag_cache(request.app)
    project_id = await cache.project_id_for_token(flags_request.token)
    if project_id is None:
        raise InvalidProjectAPIKey()
    project = await cache.get(project_id)
    if body.get("disable_flags") is True:  # the client asked for its config only
        return project, {}, False
    ctx = await _context(request.app.state.db, project, flags_request)
    try:
        results = project.compiled.evaluate(
            ctx, flags_request.flag_keys, flags_request.runtime, flags_request.evaluation_contexts
        )
    except Exception:  # one bad definition must not take the endpoint down for the project
        log.exception("flag evaluation failed for project %s", project_id)
        return project, {}, True
    return project, results, False


# --- local-evaluation definitions -------------------------------------------------------------

async def definitions_response(request: Request, session: AsyncSession, token: str | None) -> Response:
    """Local-evaluation definitions for a member's personal API key with `feature_flag:read`."""
    key_hash = presented_key_hash(request)
    if not token:
        raise ValidationError("The token query parameter (the project API key) is required.", code="required", attr="token")
    # Cache first: on SQLite a load needs the one connection the request session would hold.
    cache = flag_cache(request.app)
    project_id = await cache.project_id_for_token(token)
    project = await cache.get(project_id) if project_id is not None else None
    await authorize(
        session, key_hash, project_id if project is not None else -1, "feature_flag:read",
        unknown_project=InvalidProjectAPIKey,
    )
    headers = {"ETag": project.etag}
    if request.headers.get("if-none-match") == project.etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(project.definitions_body, media_type="application/json", headers=headers)


# --- rendering -------------------------------------------------------------------------------

def _details(project: ProjectFlags, result: FlagResult) -> dict[str, Any]:
    """PostHog's `FlagDetails` of one result (v2 and later)."""
    facts = project.facts.get(result.key)
    return {
        "key": result.key,
        "enabled": result.enabled,
        "variant": result.variant,
        "reason": {
            "code": result.reason_code,
            "condition_index": result.condition_index,
            "description": result.reason_description,
        },
        "metadata": {
            "id": facts.id if facts else None,
            "version": facts.version if facts else None,
            "description": facts.description if facts else None,
            "payload": result.payload if result.enabled else None,
            "has_experiment": facts.has_experiment if facts else False,
        },
    }


def _rendered_details(project: ProjectFlags, result: FlagResult) -> bytes:
    """`"key":{details}` as JSON, from the project's memo (the evaluator reuses result objects)."""
    try:
        return project.rendered_details[result]
    except KeyError:
        rendered = orjson.dumps(result.key) + b":" + orjson.dumps(_details(project, result))
        if len(project.rendered_details) < 100_000:
            project.rendered_details[result] = rendered
        return rendered
    except TypeError:  # a payload that is not hashable cannot key the memo
        return orjson.dumps(result.key) + b":" + orjson.dumps(_details(project, result))


# Remote-config fields `/decide` has always carried (posthog-js reads them on start).
_DECIDE_CONFIG = {
    "config": {"enable_collect_everything": True},
    "toolbarParams": {},
    "isAuthenticated": False,
    "supportedCompression": ["gzip", "gzip-js"],
    "sessionRecording": False,
    "siteApps": [],
    "capturePerformance": False,
    "autocapture_opt_out": False,
    "surveys": False,
    "heatmaps": False,
}


def render(
    project: ProjectFlags, results: dict[str, FlagResult], errors: bool, *, endpoint: str, version: int, config: bool
) -> bytes:
    """The response body for `/flags?v=` or `/decide?v=` (PostHog's versioned shapes)."""
    body: dict[str, Any] = {}
    details = (endpoint == "flags" and version >= 2) or (endpoint == "decide" and version >= 4)
    if endpoint == "decide" and version <= 1:
        body["featureFlags"] = [key for key, result in results.items() if result.enabled]
    elif endpoint == "decide" and version == 2:
        body["featureFlags"] = {key: result.value for key, result in results.items() if result.enabled}
    elif not details:
        body["featureFlags"] = {key: result.value for key, result in results.items()}
        body["featureFlagPayloads"] = {
            key: result.payload for key, result in results.items() if result.enabled and result.payload is not None
        }
    body["errorsWhileComputingFlags"] = errors
    body["requestId"] = str(uuid.uuid4())
    body["evaluatedAt"] = int(time.time() * 1000)
    if endpoint == "decide" or config:
        body.update(_DECIDE_CONFIG)
    rest = orjson.dumps(body)
    if not details:
        return rest
    flags = b",".join(_rendered_details(project, result) for result in results.values())
    return b'{"flags":{' + flags + b"}," + rest[1:]


def response_version(raw: str | None) -> int:
    """`v` of the query string; missing or garbage means the oldest shape."""
    try:
        return int(raw) if raw else 1
    except ValueError:
        return 1


async def respond(request: Request, endpoint: str) -> Response:
    """Answer one `/flags` or `/decide` request."""
    limit = request.app.state.settings.max_body_bytes
    body = decode_body(
        await read_body_within(request, limit),
        content_type=request.headers.get("content-type", ""),
        content_encoding=request.headers.get("content-encoding", ""),
        query=request.query_params,
        max_bytes=limit,
    )
    project, results, errors = await evaluate_flags_request(request, body)
    content = render(
        project,
        results,
        errors,
        endpoint=endpoint,
        version=response_version(request.query_params.get("v")),
        config=request.query_params.get("config") == "true",
    )
    return Response(content, media_type="application/json")


_FAST_PATHS = {"/flags/": "flags", "/decide/": "decide"}


class SDKFastPath:
    """Serve the SDK endpoints (`POST /flags/`, `/decide/`, and `more_paths` such as capture)
    before the framework's routing and dependency machinery, with CORS for browsers.

    Matching a path against every route and solving dependencies costs several times what
    evaluating a project's flags does; SDKs call these endpoints far more often than anything
    else. The documented routes answer the same way when this is not installed.
    """

    def __init__(self, app: ASGIApp, more_paths: Mapping[str, Callable[[Request], Awaitable[Response]]] | None = None):
        self.app = app
        self.handlers = {path: partial(respond, endpoint=endpoint) for path, endpoint in _FAST_PATHS.items()}
        self.handlers.update(more_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] not in ("POST", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        cors = sdk_cors_headers(scope)
        if scope["method"] == "OPTIONS":
            response = Response(status_code=200, headers=cors)
        else:
            try:
                response = await handler(Request(scope, receive))
            except APIError as error:
                response = Response(orjson.dumps(error.body()), error.status_code, error.headers, "application/json")
            response.headers.update(cors)
        await response(scope, receive, send)
