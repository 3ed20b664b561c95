"""The flags that can back an experiment, as the experiment creation form lists them.

The rule is PostHog's (`flags/validation.py`: multivariate, at least two variants, `control`
first in this list); deleted flags never appear and the page answers `{"results", "count"}`
without links, as the reference does.
"""

from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import CustomBodyError, ValidationError
from experiments_service.flags.management import FlagManagement
from experiments_service.flags.repository import EligibleFlagsSpec, FlagRepository
from experiments_service.flags.schemas import FeatureFlagOut

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
TRUTHY = ("true", "1", "yes")
ORDER_FIELDS = ("created_at", "key", "name")


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

    def spec(self) -> EligibleFlagsSpec:
        """Validate the strings (reference messages) into the repository's spec."""
        try:
            limit = min(int(self.limit if self.limit is not None else DEFAULT_LIMIT), MAX_LIMIT)
            offset = max(int(self.offset if self.offset is not None else 0), 0)
        except ValueError:
            raise CustomBodyError(400, {"error": "Invalid limit or offset"}) from None
        created_by_id = None
        if self.created_by_id:
            try:
                created_by_id = int(self.created_by_id)
            except ValueError:
                raise ValidationError("created_by_id must be an integer", attr="created_by_id") from None
        order = self.order or "-created_at"
        if order.removeprefix("-") not in ORDER_FIELDS:
            raise ValidationError(f"Invalid order field: '{order}'")
        return EligibleFlagsSpec(
            limit=max(limit, 0),
            offset=offset,
            order_field=order.removeprefix("-"),
            descending=order.startswith("-"),
            search=self.search or None,
            active=None if self.active is None else self.active.lower() == "true",
            created_by_id=created_by_id,
            evaluation_runtime=self.evaluation_runtime or None,
            has_evaluation_contexts=(
                None if self.has_evaluation_contexts is None else self.has_evaluation_contexts.lower() in TRUTHY
            ),
        )


async def eligible_flags(session: AsyncSession, project_id: int, params: EligibleFlagsQuery) -> EligibleFlagsPage:
    spec = params.spec()
    flags, count = await FlagRepository(session, project_id).eligible_for_experiments(spec)
    return EligibleFlagsPage(results=await FlagManagement(session, project_id, None).render(flags), count=count)
