"""The API's self-description: error bodies in the OpenAPI document, and the final touches on it.

Routes name the status codes they answer with `error_responses(...)` (and `approval_responses()`
where the approval gate can hold a change); `finish_openapi` then removes what FastAPI adds but
this service never sends (422: validation errors answer 400).
"""

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, TypeAdapter
from pydantic_core import CoreSchema

from experiments_service.approvals.schemas import ChangeRequestOut


@dataclass(frozen=True)
class DocumentedAs:
    """`Annotated[Any, DocumentedAs(Shape)]`: the document shows `Shape`, validation stays the field's own.

    For the free-form JSON fields the service checks itself, with the reference messages: typing
    them in Pydantic would change those messages and refuse keys PostHog accepts.
    """

    shape: Any

    def __get_pydantic_json_schema__(self, _: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return handler(TypeAdapter(self.shape).core_schema)


class ErrorBody(BaseModel):
    """PostHog's error envelope: every error the API renders has these four keys."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "validation_error", "code": "invalid_input", "detail": "This field is required.", "attr": "name"}
            ]
        }
    )

    type: str = Field(description="`validation_error`, `invalid_request`, `authentication_error` or `server_error`.")
    code: str = Field(description="Machine-readable reason, e.g. `invalid_input`, `not_found`, `permission_denied`.")
    detail: str = Field(description="Human-readable message.")
    attr: str | None = Field(description="The offending field (nested fields joined by `__`), if any.")


class DetailBody(BaseModel):
    """PostHog's plain `{"detail": ...}` answer of a few actions (duplicate, copy_to_project)."""

    detail: str


class ApprovalRequiredBody(BaseModel):
    """409 when an approval policy holds the change: a change request was stored (or one is pending)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="`approval_required`, or `change_request_pending` when one already waits.")
    status: str = Field(description="Always `approval_required`.")
    detail: str
    message: str
    resource_type: str
    resource_id: str | None
    change_request_id: str
    change_request: ChangeRequestOut
    required_approvers: dict[str, Any]


class PolicyConflictBody(BaseModel):
    """400 when one change matches several approval policies: split it into separate calls."""

    code: str = Field(description="Always `policy_conflict`.")
    error: str
    conflicting_policies: list[dict[str, str]]
    guidance: str


_DESCRIPTIONS = {
    400: "Invalid input or a refused action",
    401: "Credentials missing or invalid",
    403: "The key lacks the scope, or the project is not the key's",
    404: "No such object in this project",
    409: "Changed by a concurrent request, or the request conflicts with the current state",
    413: "Request body too large",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error codes, each with the error envelope.

    `descriptions` override the defaults, keyed `e404="No such experiment"`.
    """
    return {
        code: {"model": ErrorBody, "description": descriptions.get(f"e{code}", _DESCRIPTIONS[code])}
        for code in codes
    }


def approval_responses() -> dict[int | str, dict[str, Any]]:
    """400 and 409 of a write the approval gate can hold (PostHog's change-request bodies)."""
    return {
        400: {
            "model": ErrorBody | PolicyConflictBody,
            "description": "Invalid input or a refused action; `policy_conflict` when several policies match",
        },
        409: {
            "model": ApprovalRequiredBody | ErrorBody,
            "description": "An approval policy holds the change (change request created or pending), "
            "or a concurrent change",
        },
    }


# The errors every `/api/projects/{project_id}/...` operation can answer.
PROJECT_READ = (401, 403, 404)
PROJECT_WRITE = (400, 401, 403, 404, 409)

_UNUSED_COMPONENTS = ("HTTPValidationError", "ValidationError")


def finish_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Drop FastAPI's 422 (never sent: validation errors answer 400) and its schemas."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _UNUSED_COMPONENTS:
        schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the finished document (built once, as FastAPI does)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_openapi(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
