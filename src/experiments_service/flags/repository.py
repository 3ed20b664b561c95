"""All SQL for feature flags."""

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import Experiment, FeatureFlag, FlagDefinitionsVersion


class FlagRepository:
    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    def _scoped(self):
        return select(FeatureFlag).where(FeatureFlag.project_id == self.project_id)

    async def get(self, flag_id: int, *, include_deleted: bool = True, for_update: bool = False) -> FeatureFlag | None:
        query = self._scoped().where(FeatureFlag.id == flag_id)
        if not include_deleted:
            query = query.where(FeatureFlag.deleted.is_(False))
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_live_by_key(self, key: str) -> FeatureFlag | None:
        """The non-deleted flag with this key (deleted flags never match a key)."""
        query = self._scoped().where(FeatureFlag.key == key, FeatureFlag.deleted.is_(False))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def key_taken(self, key: str, *, excluding_id: int | None = None) -> bool:
        query = self._scoped().where(FeatureFlag.key == key, FeatureFlag.deleted.is_(False))
        if excluding_id is not None:
            query = query.where(FeatureFlag.id != excluding_id)
        return (await self.session.execute(query.limit(1))).first() is not None

    async def page(
        self, *, limit: int, offset: int, search: str | None = None, active: bool | None = None
    ) -> tuple[int, list[FeatureFlag]]:
        """One page of live flags, newest first, with the total count of the filtered list."""
        query = self._scoped().where(FeatureFlag.deleted.is_(False))
        if search:
            pattern = f"%{search.lower()}%"
            query = query.where(or_(func.lower(FeatureFlag.key).like(pattern), func.lower(FeatureFlag.name).like(pattern)))
        if active is not None:
            query = query.where(FeatureFlag.active.is_(active))
        count = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = await self.session.execute(query.order_by(FeatureFlag.created_at.desc(), FeatureFlag.id.desc()).limit(limit).offset(offset))
        return count, list(rows.scalars())

    async def experiment_ids_by_flag(self, flag_ids: list[int]) -> dict[int, list[int]]:
        """Ids of the live experiments using each flag (PostHog's `experiment_set`)."""
        if not flag_ids:
            return {}
        rows = await self.session.execute(
            select(Experiment.feature_flag_id, Experiment.id)
            .where(Experiment.project_id == self.project_id, Experiment.feature_flag_id.in_(flag_ids), Experiment.deleted.is_(False))
            .order_by(Experiment.id)
        )
        found: dict[int, list[int]] = {flag_id: [] for flag_id in flag_ids}
        for flag_id, experiment_id in rows:
            found[flag_id].append(experiment_id)
        return found

    async def live_flags(self) -> list[FeatureFlag]:
        """Every flag that is not deleted, in id order (what evaluation and SDK definitions serve)."""
        rows = await self.session.execute(self._scoped().where(FeatureFlag.deleted.is_(False)).order_by(FeatureFlag.id))
        return list(rows.scalars())

    async def definitions_version(self) -> int:
        query = select(FlagDefinitionsVersion.version).where(FlagDefinitionsVersion.project_id == self.project_id)
        return (await self.session.execute(query)).scalar_one_or_none() or 0

    def add(self, flag: FeatureFlag) -> None:
        self.session.add(flag)

    async def bump_definitions_version(self) -> None:
        """Mark this project's flag definitions changed (caches in every process re-load)."""
        await self.session.execute(
            update(FlagDefinitionsVersion)
            .where(FlagDefinitionsVersion.project_id == self.project_id)
            .values(version=FlagDefinitionsVersion.version + 1)
        )
