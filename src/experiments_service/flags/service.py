"""The flag write path: every flag creation and change goes through here.

Experiments (create, PATCH sync, launch, pause, resume, ship_variant), holdouts, the flags API
and approved change requests all call `FlagService`, so validation, the gates (the approval
policy check) and the listeners (version stamp, activity log, experiments following their flag)
apply the same way to each of them, once per change.
"""

import copy
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.activity import record_activity
from experiments_service.errors import ValidationError
from experiments_service.flags.changes import HOOKS, FlagChange
from experiments_service.flags.repository import FlagRepository
from experiments_service.flags.rewrite import ship_variant_filters, with_holdout
from experiments_service.flags.validation import validate_filters, validate_key
from experiments_service.models import FeatureFlag, User

# Fields of a flag that `update_flag` may change.
WRITABLE_FIELDS = frozenset(
    {"name", "filters", "active", "deleted", "ensure_experience_continuity", "evaluation_runtime", "evaluation_tags", "key"}
)


def flag_state(flag: FeatureFlag) -> dict[str, Any]:
    """A plain snapshot of the writable fields (for before/after and change detection)."""
    return {field: copy.deepcopy(getattr(flag, field)) for field in sorted(WRITABLE_FIELDS)}


@HOOKS.add_listener
async def stamp_definitions_version(change: FlagChange) -> None:
    """Every flag write makes the project's SDK definitions (and every process's cache) stale."""
    FlagRepository(change.session, change.project_id).bump_definitions_version()


@HOOKS.add_listener
async def log_flag_activity(change: FlagChange) -> None:
    flag = change.flag
    if change.created:
        activity, before, after = "created", None, flag_state(flag)
    else:
        activity = "deleted" if change.changes.get("deleted") else "updated"
        before = change.before
        after = {name: copy.deepcopy(getattr(flag, name)) for name in change.changes}
    record_activity(
        change.session,
        project_id=change.project_id,
        user_id=change.actor.id if change.actor else None,
        scope="FeatureFlag",
        item_id=flag.id,
        activity=activity,
        name=flag.key,
        before=before,
        after=after,
    )


class FlagService:
    def __init__(self, session: AsyncSession, project_id: int, actor: User | None):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = FlagRepository(session, project_id)

    async def create_flag(
        self,
        *,
        key: str,
        name: str = "",
        filters: dict[str, Any] | None = None,
        active: bool = True,
        ensure_experience_continuity: bool = False,
        evaluation_runtime: str = "all",
        evaluation_tags: list[str] | None = None,
        creation_context: str = "feature_flags",
    ) -> FeatureFlag:
        validate_key(key)
        filters = validate_filters(filters if filters is not None else {"groups": []})
        await self._check_key_free(key)
        flag = FeatureFlag(
            project_id=self.project_id,
            key=key,
            name=name,
            filters=filters,
            active=active,
            ensure_experience_continuity=ensure_experience_continuity,
            evaluation_runtime=evaluation_runtime,
            evaluation_tags=list(evaluation_tags or []),
            creation_context=creation_context,
            created_by_id=self.actor.id if self.actor else None,
            last_modified_by_id=self.actor.id if self.actor else None,
        )
        self.repo.add(flag)
        await self.session.flush()
        await HOOKS.notify(self._change(flag, flag_state(flag), before=None))
        return flag

    async def update_flag(
        self,
        flag: FeatureFlag,
        changes: dict[str, Any],
        *,
        request_data: dict[str, Any] | None = None,
        cause: object | None = None,
        approved: bool = False,
    ) -> FeatureFlag:
        """Validate, pass the gates (may raise the approval 409), apply, then notify the listeners.

        `request_data` is what the caller was asked to do (stored in a change request's intent);
        `cause` is what asked for the change (see `FlagChange.cause`); `approved` skips the gates
        for a change an approved change request applies.
        """
        unknown = set(changes) - WRITABLE_FIELDS
        if unknown:
            raise ValueError(f"not writable on a flag: {sorted(unknown)}")
        if "filters" in changes:
            changes = {**changes, "filters": validate_filters(changes["filters"])}
        changes = {field: value for field, value in changes.items() if getattr(flag, field) != value}
        if not changes:
            return flag
        if "key" in changes or changes.get("deleted") is False:
            key = changes.get("key", flag.key)
            validate_key(key)
            await self._check_key_free(key, excluding_id=flag.id)
        before = {field: copy.deepcopy(getattr(flag, field)) for field in changes}
        change = self._change(flag, changes, before=before, request_data=request_data, cause=cause)
        if not approved:
            await HOOKS.check(change)
        for field, value in changes.items():
            setattr(flag, field, copy.deepcopy(value))
        flag.last_modified_by_id = self.actor.id if self.actor else flag.last_modified_by_id
        await self.session.flush()
        await HOOKS.notify(change)
        return flag

    # --- reads for other domains (FeatureFlag SQL stays in flags/) ---------------------------

    async def get_for_write(self, flag_id: int) -> FeatureFlag | None:
        """The flag (deleted ones too), locked for this transaction."""
        return await self.repo.get(flag_id, for_update=True)

    async def of_experiment_for_write(self, experiment_id: int, *, include_deleted: bool = False) -> FeatureFlag | None:
        """The flag behind an experiment, locked (lock flags before experiments: no deadlocks)."""
        return await self.repo.of_experiment(experiment_id, include_deleted=include_deleted, for_update=True)

    async def by_ids(self, flag_ids: Iterable[int]) -> dict[int, FeatureFlag]:
        return await self.repo.flags_by_ids(flag_ids)

    async def live_by_key(self, key: str) -> FeatureFlag | None:
        return await self.repo.get_live_by_key(key)

    # --- rewrites other domains ask for ------------------------------------------------------

    async def set_holdout(self, holdout_id: int, flag_holdout: dict[str, Any] | None) -> None:
        """Stamp `filters.holdout` on the flag of every experiment using this holdout (null detaches)."""
        for flag in await self.repo.using_holdout(holdout_id):
            await self.update_flag(flag, {"filters": with_holdout(flag.filters or {}, flag_holdout)})

    async def ship_variant(
        self, flag: FeatureFlag, variant_key: str, release_to_everyone: bool, *, cause: object | None = None
    ) -> FeatureFlag:
        """Serve one variant (see `rewrite.ship_variant_filters`); the intent records the ask."""
        filters = ship_variant_filters(flag.filters or {}, variant_key, release_to_everyone)
        request_data = {"filters": filters, "variant_key": variant_key, "release_to_everyone": release_to_everyone}
        return await self.update_flag(flag, {"filters": filters}, request_data=request_data, cause=cause)

    def mark_definitions_changed(self) -> None:
        """For changes outside the flag row that SDK definitions show (e.g. `has_experiment`)."""
        self.repo.bump_definitions_version()

    async def _check_key_free(self, key: str, *, excluding_id: int | None = None) -> None:
        if await self.repo.key_taken(key, excluding_id=excluding_id):
            raise ValidationError("There is already a feature flag with this key.", code="unique", attr="key")

    def _change(
        self,
        flag: FeatureFlag,
        changes: dict[str, Any],
        *,
        before: dict[str, Any] | None,
        request_data: dict[str, Any] | None = None,
        cause: object | None = None,
    ) -> FlagChange:
        return FlagChange(
            session=self.session,
            project_id=self.project_id,
            actor=self.actor,
            flag=flag,
            changes=changes,
            before=before,
            request_data=request_data if request_data is not None else changes,
            cause=cause,
        )
