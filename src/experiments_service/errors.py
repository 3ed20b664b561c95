"""One exception hierarchy, one handler, one body: PostHog's `{type, code, detail, attr}`."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from experiments_service.outage import is_database_unavailable, log_outage


class APIError(Exception):
    """Base of every error the API renders; subclasses fix status, type and default code."""

    status_code = 400
    error_type = "validation_error"
    default_code = "invalid_input"
    default_detail = "Invalid input."

    def __init__(self, detail: str | None = None, *, code: str | None = None, attr: str | None = None):
        self.detail = detail or self.default_detail
        self.code = code or self.default_code
        self.attr = attr
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"type": self.error_type, "code": self.code, "detail": self.detail, "attr": self.attr}

    headers: dict[str, str] | None = None


class ValidationError(APIError):
    """400 for bad input and business-rule failures (`attr` names the field, if any)."""


class ParseError(APIError):
    status_code = 400
    error_type = "invalid_request"
    default_code = "parse_error"
    default_detail = "Malformed request."


class NotAuthenticated(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "not_authenticated"
    default_detail = "Authentication credentials were not provided."
    headers = {"WWW-Authenticate": "Bearer"}


class AuthenticationFailed(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "authentication_failed"
    default_detail = "Incorrect authentication credentials."
    headers = {"WWW-Authenticate": "Bearer"}


class InvalidProjectAPIKey(AuthenticationFailed):
    """A `phc_` project key (flag evaluation, capture) that matches no project."""

    default_code = "invalid_api_key"
    default_detail = "Project API key invalid. You can find your project API key in PostHog project settings."


class PermissionDenied(APIError):
    status_code = 403
    error_type = "authentication_error"
    default_code = "permission_denied"
    default_detail = "You do not have permission to perform this action."


class NotFound(APIError):
    status_code = 404
    error_type = "invalid_request"
    default_code = "not_found"
    default_detail = "Not found."


class MethodNotAllowed(APIError):
    status_code = 405
    error_type = "invalid_request"
    default_code = "method_not_allowed"


class Conflict(APIError):
    status_code = 409
    error_type = "invalid_request"
    default_code = "conflict"
    default_detail = "The resource was changed by another request; retry."


class PayloadTooLarge(APIError):
    status_code = 413
    error_type = "invalid_request"
    default_code = "payload_too_large"
    default_detail = "Request body is too large."


class ServiceUnavailable(APIError):
    """503 while the database cannot be reached (decision 14): clients retry; a 500 is a defect."""

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"
    default_detail = "The service cannot reach its database right now. Retry shortly."
    headers = {"Retry-After": "5"}


class CustomBodyError(Exception):
    """An error whose body is not the standard envelope (PostHog has a few of these)."""

    def __init__(self, status_code: int, body: Any):
        self.status_code = status_code
        self.body = body
        super().__init__(str(body))


# --- translating FastAPI/Pydantic validation into DRF's wording -----------------------------

def _drf_message(error: dict[str, Any]) -> tuple[str, str]:
    """Map one Pydantic error to DRF's (code, message)."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "required", "This field is required."
    if kind == "string_too_long":
        return "max_length", f"Ensure this field has no more than {ctx.get('max_length')} characters."
    if kind == "string_too_short":
        return "blank", "This field may not be blank."
    if kind == "literal_error":
        return "invalid_choice", f'"{value}" is not a valid choice.'
    if kind.endswith("_type") and value is None:
        return "null", "This field may not be null."
    if kind == "string_type":
        return "invalid", "Not a valid string."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "invalid", "A valid integer is required."
    if kind in ("float_parsing", "float_type"):
        return "invalid", "A valid number is required."
    if kind in ("bool_parsing", "bool_type"):
        return "invalid", "Must be a valid boolean."
    if kind.startswith("datetime"):
        return (
            "invalid",
            "Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
        )
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "invalid", f'Expected a dictionary of items but got type "{type(value).__name__}".'
    if kind == "list_type":
        return "not_a_list", f'Expected a list of items but got type "{type(value).__name__}".'
    if kind == "greater_than_equal":
        return "min_value", f"Ensure this value is greater than or equal to {ctx.get('ge')}."
    if kind == "less_than_equal":
        return "max_value", f"Ensure this value is less than or equal to {ctx.get('le')}."
    if kind == "value_error":
        message = str(ctx.get("error") or error.get("msg", "Invalid input."))
        return "invalid_input", message
    if kind == "json_invalid":
        return "parse_error", "JSON parse error - " + str(ctx.get("error", "invalid JSON"))
    return "invalid_input", str(error.get("msg", "Invalid input."))


def validation_error_from_pydantic(errors: list[dict[str, Any]]) -> APIError:
    """Turn the first Pydantic error into the reference 400 (DRF reports only the first)."""
    if not errors:
        return ValidationError()
    error = errors[0]
    loc = list(error.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        where = loc[0]
        loc = loc[1:]
    else:
        where = "body"
    code, message = _drf_message(error)
    if code == "parse_error":
        return ParseError(message)
    if where == "path":
        # DRF resolves a malformed id in the URL as a missing object.
        return NotFound()
    attr = "__".join(str(part) for part in loc) or None
    if where == "body" and error.get("type") == "missing" and not loc:
        return ParseError("JSON parse error - Expecting value: line 1 column 1 (char 0)")
    if where == "body" and not loc and error.get("type") in ("dict_type", "model_type", "model_attributes_type"):
        message = f"Invalid data. Expected a dictionary, but got {type(error.get('input')).__name__}."
    # drf-exceptions-hog reports DRF's generic `invalid` code as `invalid_input`.
    return ValidationError(message, code="invalid_input" if code == "invalid" else code, attr=attr)


# PostgreSQL `integer` columns (and the SQLite driver) cannot hold larger values.
MAX_STORED_INT = 2**31 - 1


def _input_the_database_refused(request: Request, error: Exception) -> APIError | None:
    """A 4xx for values the database cannot take (out-of-range ids, NUL characters, NaN); else None.

    Checked after the fact so that every query path is covered; the transaction is rolled back.
    """
    text = str(getattr(error, "orig", error))
    if isinstance(error, OverflowError) or "out of int" in text or "out of range for type" in text:
        path_ids = [str(value) for value in request.path_params.values()]
        if any(value.isdigit() and int(value) > MAX_STORED_INT for value in path_ids):
            return NotFound()
        return ValidationError(
            f"Ensure this value is less than or equal to {MAX_STORED_INT}.", code="max_value"
        )
    if "0x00" in text or "\\u0000" in text:
        return ValidationError("Null characters are not allowed.", code="null_characters_not_allowed")
    if "invalid input syntax for type json" in text:
        # NaN and infinite numbers parse in Python but are not JSON.
        return ParseError("JSON parse error - Out of range float values are not JSON compliant")
    if getattr(getattr(error, "orig", None), "sqlstate", None) in ("40001", "40P01"):
        return Conflict()
    return None


def _render(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the app as the reference envelope (or a documented custom body)."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _render(exc)

    @app.exception_handler(CustomBodyError)
    async def _custom(_: Request, exc: CustomBodyError) -> Response:
        if exc.body is None:
            return Response(status_code=exc.status_code)
        return JSONResponse(exc.body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _render(validation_error_from_pydantic(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _render(NotFound())
        if exc.status_code == 405:
            return _render(MethodNotAllowed(f'Method "{request.method}" not allowed.'))
        if exc.status_code == 413:
            return _render(PayloadTooLarge())
        error = APIError(str(exc.detail))
        error.status_code = exc.status_code
        error.error_type = "invalid_request"
        return _render(error)

    @app.exception_handler(StaleDataError)
    async def _stale(_: Request, __: StaleDataError) -> JSONResponse:
        return _render(Conflict())

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, __: IntegrityError) -> JSONResponse:
        return _render(Conflict("The request conflicts with the current state of the resource."))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(OverflowError)
    @app.exception_handler(OSError)
    @app.exception_handler(PoolTimeout)
    async def _refused_by_database(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            log_outage(f"{request.method} {request.url.path}", exc)
            return _render(ServiceUnavailable())
        refused = _input_the_database_refused(request, exc) if isinstance(exc, DBAPIError | OverflowError) else None
        if refused is None:
            raise exc
        return _render(refused)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            log_outage(f"{request.method} {request.url.path}", exc)
            return _render(ServiceUnavailable())
        error = APIError("A server error occurred.", code="error")
        error.status_code = 500
        error.error_type = "server_error"
        return _render(error)
