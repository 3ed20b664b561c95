"""Experiment holdouts: a stable share of users kept out of every experiment that uses the holdout.

A holdout's groups carry the variant `holdout-<id>`; each experiment flag that uses the holdout
stores `filters.holdout = {"id", "exclusion_percentage"}`, so changing or deleting a holdout
rewrites those flags through the flag service in the same transaction.
"""

import copy
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import DocumentedAs
from experiments_service.errors import ValidationError
from experiments_service.experiments.linked_objects import LinkedObjectService
from experiments_service.experiments.schemas import HoldoutOut
from experiments_service.flags.rewrite import holdout_flag_filter
from experiments_service.flags.service import FlagService
from experiments_service.flags.shapes import FeatureFlagGroup
from experiments_service.models import ExperimentHoldout

HoldoutName = Annotated[str, Field(min_length=1, max_length=400)]
HoldoutDescription = Annotated[str | None, Field(max_length=400)]


class HoldoutCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Global 10% holdout", "filters": [{"properties": [], "rollout_percentage": 10}]}]
        }
    )

    name: HoldoutName
    description: HoldoutDescription = None
    filters: Annotated[list[dict[str, Any]] | None, DocumentedAs(list[FeatureFlagGroup] | None)] = Field(
        None, description="The holdout's groups; their `rollout_percentage` is the share held out."
    )


class HoldoutUpdate(BaseModel):
    """Partial update: only the fields sent change; an explicit null name is rejected."""

    name: HoldoutName = None  # type: ignore[assignment]
    description: HoldoutDescription = None
    filters: Annotated[list[dict[str, Any]], DocumentedAs(list[FeatureFlagGroup])] = None  # type: ignore[assignment]


def _validate_groups(filters: list[dict[str, Any]]) -> None:
    for group in filters:
        percentage = group.get("rollout_percentage")
        if percentage is None:
            raise ValidationError("Rollout percentage must be present.", attr="filters")
        if isinstance(percentage, bool) or not isinstance(percentage, int | float) or not 0 <= percentage <= 100:
            raise ValidationError("Rollout percentage must be between 0 and 100.", attr="filters")


def _with_holdout_variant(holdout_id: int, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**group, "variant": f"holdout-{holdout_id}"} for group in filters]


def _snapshot(holdout: ExperimentHoldout) -> dict[str, Any]:
    return {
        "name": holdout.name,
        "description": holdout.description,
        "filters": copy.deepcopy(holdout.filters),
    }


class HoldoutService(LinkedObjectService[ExperimentHoldout, HoldoutOut]):
    model = ExperimentHoldout
    rendering = HoldoutOut
    activity_type = "holdout"

    async def create(self, data: HoldoutCreate) -> ExperimentHoldout:
        if not data.filters:
            raise ValidationError("Filters are required to create an holdout group")
        _validate_groups(data.filters)
        holdout = ExperimentHoldout(
            project_id=self.project_id,
            name=data.name,
            description=data.description,
            filters=data.filters,
            created_by_id=self.actor.id,
        )
        self.repo.add(holdout)
        await self.session.flush()
        holdout.filters = _with_holdout_variant(holdout.id, data.filters)
        await self.session.flush()
        self.record(holdout, "created", after=_snapshot(holdout))
        return holdout

    async def update(self, holdout: ExperimentHoldout, data: HoldoutCreate | HoldoutUpdate) -> ExperimentHoldout:
        """Apply the fields sent (PATCH, or PUT with the required ones); flags follow new groups."""
        changes = data.model_dump(exclude_unset=True)
        if "filters" in changes:
            if not changes["filters"]:
                raise ValidationError("This list may not be empty.", code="empty", attr="filters")
            _validate_groups(changes["filters"])
            changes["filters"] = _with_holdout_variant(holdout.id, changes["filters"])
        filters_changed = "filters" in changes and changes["filters"] != holdout.filters
        await self.apply(holdout, changes, _snapshot)
        if filters_changed:
            await self._rewrite_flags(holdout, holdout_flag_filter(holdout))
        return holdout

    async def delete(self, holdout: ExperimentHoldout) -> None:
        """Detach the holdout from every flag that uses it, then delete it (experiments let go by FK)."""
        await self._rewrite_flags(holdout, None)
        self.record(holdout, "deleted", before=_snapshot(holdout))
        await self.repo.delete(holdout)
        await self.session.flush()

    async def _rewrite_flags(self, holdout: ExperimentHoldout, flag_holdout: dict[str, Any] | None) -> None:
        await FlagService(self.session, self.project_id, self.actor).set_holdout(holdout.id, flag_holdout)
