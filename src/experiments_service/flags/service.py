"""The flag-service write path: every flag creation and change goes through here.

Experiments (create, PATCH sync, launch, pause, resume, ship_variant), the flags API and
approved change requests all call `FlagService`, so validation, the approval gate, versioning,
cache invalidation and the activity log apply the same way to each of them.
"""

import copy
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.activity import record_activity
from experiments_service.approvals import gate
from experiments_service.errors import ValidationError
from experiments_service.flags.repository import FlagRepository
from experiments_service.flags.validation import validate_filters, validate_key
from experiments_service.models import FeatureFlag, User

# Fields of a flag that `update_flag` may change.
WRITABLE_FIELDS = frozenset(
    {"name", "filters", "active", "deleted", "ensure_experience_continuity", "evaluation_runtime", "evaluation_tags", "key"}
)


def flag_state(flag: FeatureFlag) -> dict[str, Any]:
    """A plain snapshot of the writable fields (for before/after and change detection)."""
    return {field: copy.deepcopy(getattr(flag, field)) for field in sorted(WRITABLE_FIELDS)}


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
        if await self.repo.key_taken(key):
            raise ValidationError("There is already a feature flag with this key.", code="unique", attr="key")
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
        self.repo.bump_definitions_version()
        record_activity(
            self.session,
            project_id=self.project_id,
            user_id=self.actor.id if self.actor else None,
            scope="FeatureFlag",
            item_id=flag.id,
            activity="created",
            name=flag.key,
            after=flag_state(flag),
        )
        return flag

    async def update_flag(
        self, flag: FeatureFlag, changes: dict[str, Any], *, request_data: dict[str, Any] | None = None
    ) -> FeatureFlag:
        """Validate, pass the approval gate (may raise the 409), then apply and record.

        `request_data` is what the caller was asked to do (stored in a change request's intent).
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
            validate_key(changes.get("key", flag.key))
            if await self.repo.key_taken(changes.get("key", flag.key), excluding_id=flag.id):
                raise ValidationError("There is already a feature flag with this key.", code="unique", attr="key")
        await gate.check_flag_change(
            self.session, project_id=self.project_id, actor=self.actor, flag=flag, changes=changes,
            request_data=request_data if request_data is not None else changes,
        )
        return await self.apply_flag_change(flag, changes)

    async def apply_flag_change(self, flag: FeatureFlag, changes: dict[str, Any]) -> FeatureFlag:
        """Write already-validated, already-approved changes (approved change requests land here)."""
        before = flag_state(flag)
        for field, value in changes.items():
            setattr(flag, field, copy.deepcopy(value))
        flag.last_modified_by_id = self.actor.id if self.actor else flag.last_modified_by_id
        await self.session.flush()
        self.repo.bump_definitions_version()
        after = flag_state(flag)
        record_activity(
            self.session,
            project_id=self.project_id,
            user_id=self.actor.id if self.actor else None,
            scope="FeatureFlag",
            item_id=flag.id,
            activity="deleted" if changes.get("deleted") else "updated",
            name=flag.key,
            before={field: before[field] for field in changes},
            after={field: after[field] for field in changes},
        )
        return flag
