"""Flags that can back an experiment: multivariate, at least two variants, `control` first.

The experiment creation form offers these when linking an existing flag, so deleted flags never
appear and the page answers `{"results", "count"}` without links, as the reference does.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.repository import AuthRepository
from experiments_service.errors import CustomBodyError, ValidationError
from experiments_service.flags.repository import FlagRepository
from experiments_service.flags.schemas import FeatureFlagOut
from experiments_service.models import FeatureFlag

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
TRUTHY = ("true", "1", "yes")

ORDER_COLUMNS = {"created_at": FeatureFlag.created_at, "key": FeatureFlag.key, "name": FeatureFlag.name}


class EligibleFlagsPage(BaseModel):
    results: list[FeatureFlagOut]
    count: int


@dataclass(frozen=True)
class EligibleFlagsQuery:
    """The list's query parameters, as sent (strings; absent ones are None)."""

    limit: str | None = None
    offset: str | None = None
    search: str | None = None
    active: str | None = None
    created_by_id: str | None = None
    order: str | None = None
    evaluation_runtime: str | None = None
    has_evaluation_contexts: str | None = None


def _window(params: EligibleFlagsQuery) -> tuple[int, int]:
    try:
        limit = min(int(params.limit if params.limit is not None else DEFAULT_LIMIT), MAX_LIMIT)
        offset = max(int(params.offset if params.offset is not None else 0), 0)
    except ValueError:
        raise CustomBodyError(400, {"error": "Invalid limit or offset"}) from None
    return max(limit, 0), offset


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(params: EligibleFlagsQuery) -> list[ColumnElement[bool]]:
    variants = FeatureFlag.filters["multivariate"]["variants"]
    conditions: list[ColumnElement[bool]] = [
        FeatureFlag.deleted.is_(False),
        variants[0]["key"].as_string() == "control",
        variants[1]["key"].as_string().is_not(None),
    ]
    if params.search:
        pattern = f"%{_escape_like(params.search)}%"
        conditions.append(or_(FeatureFlag.key.ilike(pattern, escape="\\"), FeatureFlag.name.ilike(pattern, escape="\\")))
    if params.active is not None:
        conditions.append(FeatureFlag.active.is_(params.active.lower() == "true"))
    if params.created_by_id:
        try:
            conditions.append(FeatureFlag.created_by_id == int(params.created_by_id))
        except ValueError:
            raise ValidationError("created_by_id must be an integer", attr="created_by_id") from None
    if params.evaluation_runtime:
        conditions.append(FeatureFlag.evaluation_runtime == params.evaluation_runtime)
    if params.has_evaluation_contexts is not None:
        tag_count = func.coalesce(func.json_array_length(FeatureFlag.evaluation_tags), 0)
        wanted = params.has_evaluation_contexts.lower() in TRUTHY
        conditions.append(tag_count > 0 if wanted else tag_count == 0)
    return conditions


def _ordering(order: str | None) -> list[Any]:
    if not order:
        return [FeatureFlag.created_at.desc(), FeatureFlag.id.desc()]
    column = ORDER_COLUMNS.get(order.removeprefix("-"))
    if column is None:
        raise ValidationError(f"Invalid order field: '{order}'")
    descending = order.startswith("-")
    return [column.desc() if descending else column.asc(), FeatureFlag.id.desc() if descending else FeatureFlag.id]


async def eligible_flags(session: AsyncSession, project_id: int, params: EligibleFlagsQuery) -> EligibleFlagsPage:
    limit, offset = _window(params)
    conditions = [FeatureFlag.project_id == project_id, *_conditions(params)]
    ordering = _ordering(params.order)
    count = await session.scalar(select(func.count()).select_from(FeatureFlag).where(*conditions))
    flags = list(
        (await session.execute(select(FeatureFlag).where(*conditions).order_by(*ordering).limit(limit).offset(offset)))
        .scalars()
        .all()
    )
    experiment_ids = await FlagRepository(session, project_id).experiment_ids_by_flag([flag.id for flag in flags])
    users = await AuthRepository(session).users_by_ids(
        [user_id for flag in flags for user_id in (flag.created_by_id, flag.last_modified_by_id) if user_id]
    )
    return EligibleFlagsPage(
        results=[FeatureFlagOut.of(flag, users, experiment_ids[flag.id]) for flag in flags],
        count=int(count or 0),
    )
