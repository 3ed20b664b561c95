"""Telling an outage from a bug: errors that mean "the database cannot be reached right now".

Such errors answer 503 with `Retry-After` (PostHog's capture does the same, and its SDKs retry
on it); every other unexpected error stays a 500, which always means a defect.
"""

import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

# PostgreSQL error classes of an unreachable or unavailable server or database:
# 08 connection exception, 57P01-57P03 shutting down / starting up, 53300 too many connections,
# 3D000 the database does not exist (dropped or renamed under the running service).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300", "3D000")
# SQLite's equivalents: the file is busy past the driver's timeout, or gone.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")


def _causes(error: BaseException):
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database is unreachable, not that a query is wrong."""
    for cause in _causes(error):
        if isinstance(cause, PoolTimeout | ConnectionError | TimeoutError):
            return True
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError | PermissionError):
            return True
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
            return True
        if type(cause).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") and "connection" in str(cause).lower():
            return True
        if type(cause).__module__ == "sqlite3" and str(cause).lower().startswith(_SQLITE_UNAVAILABLE):
            return True
    return False


def log_outage(where: str, error: BaseException) -> None:
    """One line per request answered 503 (no traceback: nothing in the code is wrong)."""
    log.warning("%s answered 503: the database is unreachable (%s)", where, error)
