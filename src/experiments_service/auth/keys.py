"""Key minting and hashing: secrets are shown once and stored only as SHA-256."""

import hashlib
import secrets

from experiments_service.json_limits import has_unstorable_text

PERSONAL_KEY_PREFIX = "phx_"
PROJECT_KEY_PREFIX = "phc_"

# Every scope a personal key can carry (`*` grants all of them).
SCOPE_OBJECTS = (
    "experiment", "feature_flag", "approval", "activity_log", "event", "project", "user", "personal_api_key"
)
SCOPE_ACTIONS = ("read", "write")


def new_personal_api_key() -> str:
    return PERSONAL_KEY_PREFIX + secrets.token_urlsafe(32)


def new_project_api_key() -> str:
    return PROJECT_KEY_PREFIX + secrets.token_urlsafe(32)


def plausible_project_key(token: object) -> bool:
    """Whether `token` could be a stored project key: text that fits the column and holds no
    NUL or unpaired surrogates (which the drivers refuse to send) — anything else matches no project, unlooked-up."""
    return isinstance(token, str) and 0 < len(token) <= 100 and not has_unstorable_text(token)


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def mask_key(value: str) -> str:
    return f"{value[:4]}...{value[-4:]}"


def valid_scope(scope: str) -> bool:
    if scope == "*":
        return True
    obj, _, action = scope.partition(":")
    return obj in SCOPE_OBJECTS and action in SCOPE_ACTIONS


def scope_allows(scopes: list[str], required: str) -> bool:
    """`*` grants all, `X:write` satisfies `X:read`; a key with no scopes is unrestricted."""
    if not scopes or "*" in scopes or required in scopes:
        return True
    obj, _, action = required.partition(":")
    return action == "read" and f"{obj}:write" in scopes


def scopes_cover(granted: list[str], wanted: list[str]) -> bool:
    """Whether a key holding `granted` holds everything `wanted` asks for (`*` only under `*`)."""
    if not granted or "*" in granted:
        return True
    return all(scope != "*" and scope_allows(granted, scope) for scope in wanted or ["*"])


def teams_cover(granted: list[int] | None, wanted: list[int] | None) -> bool:
    """Whether a key scoped to `granted` projects (None: all) reaches every project of `wanted`."""
    if not granted:
        return True
    return bool(wanted) and set(wanted) <= set(granted)
