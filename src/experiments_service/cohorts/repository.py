"""All SQL for cohorts: the rows, the distinct ids of static cohorts, and the flags naming them."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.db import insert_on_conflict
from experiments_service.models import Cohort, CohortStaticMember, FeatureFlag, User
from experiments_service.pagination import PageRequest, fetch_page


async def cohort_definitions(session: AsyncSession, project_id: int) -> dict[int, dict[str, Any]]:
    """A project's live cohorts as flags and results read them: `{id: {"is_static", "properties"}}`."""
    query = select(Cohort.id, Cohort.is_static, Cohort.filters).where(
        Cohort.project_id == project_id, Cohort.deleted.is_(False)
    )
    return {
        cohort_id: {"is_static": is_static, "properties": (filters or {}).get("properties") or {}}
        for cohort_id, is_static, filters in (await session.execute(query))
    }


class CohortRepository:
    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    def _scoped(self):
        return select(Cohort).where(Cohort.project_id == self.project_id)

    async def list_page(self, page: PageRequest, *, static: bool | None, search: str | None) -> tuple[list[Cohort], int]:
        """Live cohorts, newest first (PostHog's list leaves deleted ones out)."""
        query = self._scoped().where(Cohort.deleted.is_(False))
        if static is not None:
            query = query.where(Cohort.is_static.is_(static))
        if search:
            query = query.where(func.lower(Cohort.name).contains(search.lower(), autoescape=True))
        return await fetch_page(self.session, query.order_by(Cohort.created_at.desc(), Cohort.id.desc()), page)

    async def get(self, cohort_id: int) -> Cohort | None:
        return (await self.session.execute(self._scoped().where(Cohort.id == cohort_id))).scalar_one_or_none()

    async def by_ids(self, cohort_ids: Iterable[int]) -> dict[int, Cohort]:
        ids = sorted(set(cohort_ids))
        if not ids:
            return {}
        rows = await self.session.execute(self._scoped().where(Cohort.id.in_(ids)))
        return {cohort.id: cohort for cohort in rows.scalars()}

    async def add(self, cohort: Cohort) -> Cohort:
        self.session.add(cohort)
        await self.session.flush()
        return cohort

    async def add_members(self, cohort_id: int, distinct_ids: Iterable[str]) -> None:
        rows = [{"cohort_id": cohort_id, "distinct_id": distinct_id} for distinct_id in sorted(set(distinct_ids))]
        if rows:
            statement = insert_on_conflict(self.session, CohortStaticMember.__table__).on_conflict_do_nothing()
            await self.session.execute(statement, rows)

    async def member_counts(self, cohort_ids: Iterable[int]) -> dict[int, int]:
        ids = sorted(set(cohort_ids))
        if not ids:
            return {}
        query = (
            select(CohortStaticMember.cohort_id, func.count())
            .where(CohortStaticMember.cohort_id.in_(ids))
            .group_by(CohortStaticMember.cohort_id)
        )
        return dict((await self.session.execute(query)).all())

    async def live_flags(self) -> list[FeatureFlag]:
        """Active, not deleted flags of the project (those a cohort deletion would break)."""
        query = select(FeatureFlag).where(
            FeatureFlag.project_id == self.project_id, FeatureFlag.active.is_(True), FeatureFlag.deleted.is_(False)
        )
        return list((await self.session.execute(query.order_by(FeatureFlag.id))).scalars())

    async def users(self, user_ids: Iterable[int | None]) -> dict[int, User]:
        ids = sorted({user_id for user_id in user_ids if user_id is not None})
        if not ids:
            return {}
        return {user.id: user for user in (await self.session.execute(select(User).where(User.id.in_(ids)))).scalars()}
