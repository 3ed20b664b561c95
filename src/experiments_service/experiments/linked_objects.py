"""Holdouts and saved metrics, the objects experiments link to: their services' shared reads and log.

Both are small project-owned objects listed newest first and logged under the `Experiment`
activity scope (as PostHog does), so one base keeps their read and log paths identical.
"""

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.activity import record_activity
from experiments_service.errors import NotFound
from experiments_service.experiments.repository import ExperimentRepository
from experiments_service.models import ExperimentHoldout, ExperimentSavedMetric, User
from experiments_service.pagination import PageRequest, fetch_page

Row = TypeVar("Row", ExperimentHoldout, ExperimentSavedMetric)
Out = TypeVar("Out", bound=BaseModel)


class LinkedObjectService(Generic[Row, Out]):
    model: ClassVar[type]
    # The response schema; its `of(row, created_by)` renders one row.
    rendering: ClassVar[Any]
    # `detail.type` of the activity entries (PostHog: "holdout", "saved_metric").
    activity_type: ClassVar[str]

    def __init__(self, session: AsyncSession, project_id: int, actor: User):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = ExperimentRepository(session, project_id)

    async def render(self, rows: list[Row]) -> list[Out]:
        users = await self.repo.users(row.created_by_id for row in rows)
        return [self.rendering.of(row, users.get(row.created_by_id)) for row in rows]

    async def render_one(self, row: Row) -> Out:
        return (await self.render([row]))[0]

    async def list_page(self, page: PageRequest) -> tuple[list[Row], int]:
        return await fetch_page(self.session, self.repo.newest_first(self.model), page)

    async def get(self, object_id: int) -> Row:
        row = await self.repo.project_object(self.model, object_id)
        if row is None:
            raise NotFound()
        return row

    async def apply(self, row: Row, changes: dict[str, Any], snapshot: Callable[[Row], dict[str, Any]]) -> Row:
        """Write `changes` and log them, with before and after, when anything really changed."""
        before = snapshot(row)
        for field, value in changes.items():
            setattr(row, field, value)
        await self.session.flush()
        after = snapshot(row)
        if before != after:
            self.record(row, "updated", before=before, after=after)
        return row

    def record(self, row: Row, activity: str, *, before: Any = None, after: Any = None) -> None:
        record_activity(
            self.session,
            project_id=self.project_id,
            user_id=self.actor.id,
            scope="Experiment",
            item_id=row.id,
            activity=activity,
            name=row.name,
            before=before,
            after=after,
            extra={"type": self.activity_type},
        )
