"""Shared request dependencies: the request's database session, committed at the edge."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

_SESSION_KEY = "db_session"


def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use; `TransactionalRoute` commits or rolls it back."""
    state = request.scope.setdefault("state", {})
    session = state.get(_SESSION_KEY)
    if session is None:
        session = request.app.state.db.sessionmaker()
        state[_SESSION_KEY] = session
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


class TransactionalRoute(APIRoute):
    """Commit the request's session once the handler has returned; roll back on any error.

    Services and repositories never commit, so one request (e.g. a lifecycle action and its
    flag change) is one transaction by construction. An error with an `after_rollback` write
    (see `approvals/errors.py`) gets that write committed after the rollback.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run_in_transaction(request: Request) -> Response:
            try:
                response = await handler(request)
            except BaseException as exc:
                session = request.scope.get("state", {}).pop(_SESSION_KEY, None)
                if session is not None:
                    try:
                        await session.rollback()
                        # An error may carry a write that must outlive the rollback (a 409's
                        # stored change request): run it alone on the clean session and commit.
                        deferred = getattr(exc, "after_rollback", None)
                        if deferred is not None:
                            await deferred(session)
                            await session.commit()
                    finally:
                        await session.close()
                raise
            session = request.scope.get("state", {}).pop(_SESSION_KEY, None)
            if session is not None:
                try:
                    await session.commit()
                finally:
                    await session.close()
            return response

        return run_in_transaction
