"""The base of every project-scoped repository: scoping, row locks and loads by id in one place."""

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

Row = TypeVar("Row")


class ProjectRepository:
    """SQL for one project on the request's session; every query goes through `scoped`."""

    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    def add(self, row: Any) -> None:
        self.session.add(row)

    def scoped(self, model: type[Row]) -> Select[tuple[Row]]:
        return select(model).where(model.project_id == self.project_id)

    def locked(self, query: Select) -> Select:
        """Lock the rows on PostgreSQL and re-read them (SQLite serialises writers anyway)."""
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        return query.execution_options(populate_existing=True)

    async def one(self, query: Select, *, for_update: bool = False) -> Any:
        """The one row `query` finds (or None), locked when asked."""
        return (await self.session.execute(self.locked(query) if for_update else query)).scalar_one_or_none()

    async def by_ids(self, model: type[Row], ids: Iterable[int | None], *, project_scoped: bool = True) -> dict[int, Row]:
        """Rows by primary key; rows this request already loaded come from the session, not the database."""
        wanted = {row_id for row_id in ids if row_id is not None}
        identity_map = self.session.sync_session.identity_map
        found: dict[int, Any] = {}
        for row_id in wanted:
            row = identity_map.get(identity_key(model, row_id))
            if row is not None and (not project_scoped or row.project_id == self.project_id):
                found[row_id] = row
        missing = wanted - found.keys()
        if missing:
            query = select(model).where(model.id.in_(missing))
            if project_scoped:
                query = query.where(model.project_id == self.project_id)
            found.update({row.id: row for row in (await self.session.execute(query)).scalars()})
        return found
