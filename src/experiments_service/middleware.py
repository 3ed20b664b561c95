"""ASGI middleware: optional trailing slashes; CORS and bounded body reading for the SDK endpoints."""

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from experiments_service.errors import PayloadTooLarge

_NO_SLASH_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/healthz", "/readyz", "/version", "/metrics")
# Swagger UI's and ReDoc's script and style files (see `app.DOCS_STATIC`).
_NO_SLASH_PREFIX = "/docs/static/"


class TrailingSlashMiddleware:
    """Accept every route with or without its trailing slash, like PostHog's router (no redirect)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.endswith("/") and path not in _NO_SLASH_PATHS and not path.startswith(_NO_SLASH_PREFIX):
                scope = dict(scope)
                scope["path"] = path + "/"
                if scope.get("raw_path"):
                    scope["raw_path"] = scope["raw_path"] + b"/"
        await self.app(scope, receive, send)


class APICORSMiddleware:
    """CORS for `/api/...` from the configured origins (`CORS_ALLOWED_ORIGINS`); other paths
    (the SDK routes, with their own PostHog-style CORS) pass through untouched."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]):
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=allowed_origins, allow_methods=["*"], allow_headers=["*"], max_age=600
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def sdk_cors_headers(scope: Scope) -> dict[str, str]:
    """CORS headers for the SDK endpoints (flags, capture): browser SDKs call them from the
    site's own origin, with credentials."""
    for name, value in scope["headers"]:
        if name == b"origin":
            return {
                "Access-Control-Allow-Origin": value.decode("latin-1"),
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Content-Encoding",
                "Vary": "Origin",
            }
    return {}


async def read_body_within(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it outgrows the limit (chunked uploads
    may declare no Content-Length)."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
