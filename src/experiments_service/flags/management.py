"""What the `feature_flags/` endpoints do: list, render, create, change (with the delete checks).

`FlagService` (flags/service.py) is the write path these steps call, as every other domain does.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.repository import AuthRepository
from experiments_service.errors import NotFound, ValidationError
from experiments_service.flags.repository import FlagRepository
from experiments_service.flags.schemas import FeatureFlagCreate, FeatureFlagOut, FeatureFlagPatch
from experiments_service.flags.service import FlagService
from experiments_service.models import FeatureFlag, User
from experiments_service.pagination import PageRequest, fetch_page

# PATCH fields that may not be set to null (the rest map null to their default).
_NOT_NULLABLE = ("key", "name", "filters", "active", "deleted", "evaluation_runtime")


def _evaluation_tags(body: FeatureFlagCreate | FeatureFlagPatch) -> list[str] | None:
    """`evaluation_contexts` is the newer spelling of `evaluation_tags`; the former wins."""
    return body.evaluation_contexts if body.evaluation_contexts is not None else body.evaluation_tags


class FlagManagement:
    def __init__(self, session: AsyncSession, project_id: int, actor: User | None):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = FlagRepository(session, project_id)
        self.service = FlagService(session, project_id, actor)

    async def render(self, flags: list[FeatureFlag]) -> list[FeatureFlagOut]:
        user_ids = [uid for flag in flags for uid in (flag.created_by_id, flag.last_modified_by_id) if uid]
        users = await AuthRepository(self.session).users_by_ids(user_ids)
        experiments = await self.repo.experiment_ids_by_flag([flag.id for flag in flags])
        return [FeatureFlagOut.of(flag, users, experiments.get(flag.id, [])) for flag in flags]

    async def render_one(self, flag: FeatureFlag) -> FeatureFlagOut:
        return (await self.render([flag]))[0]

    async def page(self, page: PageRequest, *, search: str | None, active: bool | None) -> dict[str, Any]:
        flags, count = await fetch_page(self.session, self.repo.live_query(search=search, active=active), page)
        return page.envelope(await self.render(flags), count)

    async def get(self, flag_id: int) -> FeatureFlag:
        flag = await self.repo.get(flag_id, for_update=True)
        if flag is None:
            raise NotFound()
        return flag

    async def create(self, body: FeatureFlagCreate) -> FeatureFlagOut:
        flag = await self.service.create_flag(
            key=body.key,
            name=body.name,
            filters=body.filters,
            active=body.active,
            ensure_experience_continuity=bool(body.ensure_experience_continuity),
            evaluation_runtime=body.evaluation_runtime,
            evaluation_tags=_evaluation_tags(body),
        )
        return await self.render_one(flag)

    async def update(self, flag_id: int, body: FeatureFlagPatch) -> FeatureFlagOut:
        flag = await self.get(flag_id)
        sent = body.model_dump(exclude_unset=True)
        for field in _NOT_NULLABLE:
            if field in sent and sent[field] is None:
                raise ValidationError("This field may not be null.", code="null", attr=field)
        changes: dict[str, Any] = {
            field: sent[field] for field in ("key", "name", "filters", "active", "deleted", "evaluation_runtime") if field in sent
        }
        if "ensure_experience_continuity" in sent:
            changes["ensure_experience_continuity"] = bool(sent["ensure_experience_continuity"])
        if "evaluation_tags" in sent or "evaluation_contexts" in sent:
            changes["evaluation_tags"] = list(_evaluation_tags(body) or [])
        if changes.get("deleted") is True and not flag.deleted:
            await self._check_deletable(flag)
        flag = await self.service.update_flag(flag, changes, request_data=sent)
        return await self.render_one(flag)

    async def _check_deletable(self, flag: FeatureFlag) -> None:
        """A flag that live experiments or other live flags rely on cannot be deleted (reference 400s)."""
        experiment_ids = (await self.repo.experiment_ids_by_flag([flag.id]))[flag.id]
        if experiment_ids:
            raise ValidationError(
                "Cannot delete a feature flag that is linked to active experiment(s) with ID(s): "
                f"{', '.join(map(str, experiment_ids))}. Please delete the experiment(s) before deleting the flag."
            )
        dependents = await self.repo.flags_depending_on(flag)
        if dependents:
            names = [f"{other.key} (ID: {other.id})" for other in dependents[:5]]
            if len(dependents) > 5:
                names.append(f"and {len(dependents) - 5} more")
            raise ValidationError(
                f"Cannot delete this feature flag because other flags depend on it: {', '.join(names)}. "
                "Please update or delete the dependent flags first."
            )
