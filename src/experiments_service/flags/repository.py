"""All SQL for feature flags."""

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import FeatureFlag, FlagDefinitionsVersion


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

    def add(self, flag: FeatureFlag) -> None:
        self.session.add(flag)

    async def bump_definitions_version(self) -> None:
        """Mark this project's flag definitions changed (caches in every process re-load)."""
        await self.session.execute(
            update(FlagDefinitionsVersion)
            .where(FlagDefinitionsVersion.project_id == self.project_id)
            .values(version=FlagDefinitionsVersion.version + 1)
        )
