"""Group types of a project (`organization`, `company`, ...): at most five, indexed 0-4.

Group flags aggregate by `filters.aggregation_group_type_index`; SDKs map the index to the
name through `group_type_mapping`, so adding a type changes the flag definitions too.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import ValidationError
from experiments_service.flags.repository import FlagRepository
from experiments_service.models import GroupTypeMapping

MAX_GROUP_TYPES = 5


class GroupTypes:
    def __init__(self, session: AsyncSession, project_id: int):
        self.project_id = project_id
        self.repo = FlagRepository(session, project_id)

    async def list(self) -> list[GroupTypeMapping]:
        return await self.repo.group_types()

    async def mapping(self) -> dict[str, str]:
        """`{"0": "organization", ...}`, the shape SDKs read."""
        return {str(row.group_type_index): row.group_type for row in await self.list()}

    async def add(self, group_type: str, name_singular: str | None, name_plural: str | None) -> tuple[GroupTypeMapping, bool]:
        """Give `group_type` the lowest free index; an existing type is returned as is."""
        existing = await self.list()
        for row in existing:
            if row.group_type == group_type:
                return row, False
        used = {row.group_type_index for row in existing}
        free = [index for index in range(MAX_GROUP_TYPES) if index not in used]
        if not free:
            raise ValidationError(
                f"A project can have at most {MAX_GROUP_TYPES} group types.", code="max_group_types", attr="group_type"
            )
        row = GroupTypeMapping(
            project_id=self.project_id,
            group_type=group_type,
            group_type_index=free[0],
            name_singular=name_singular,
            name_plural=name_plural,
        )
        self.repo.add(row)
        await self.repo.session.flush()
        self.repo.bump_definitions_version()
        return row, True
