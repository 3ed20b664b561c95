"""SQL for projects, users, memberships and keys."""

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import PersonalAPIKey, Project, ProjectMember, User


class AuthRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def resolve_access(
        self, secure_value: str, project_id: int
    ) -> tuple[PersonalAPIKey, User, Project | None, bool] | None:
        """Key, its user, the project and whether the user is a member, in one round trip."""
        row = (
            await self.session.execute(
                select(PersonalAPIKey, User, Project, ProjectMember.user_id)
                .join(User, User.id == PersonalAPIKey.user_id)
                .outerjoin(Project, Project.id == project_id)
                .outerjoin(
                    ProjectMember,
                    and_(ProjectMember.project_id == project_id, ProjectMember.user_id == User.id),
                )
                .where(PersonalAPIKey.secure_value == secure_value)
            )
        ).first()
        if row is None:
            return None
        return row[0], row[1], row[2], row[3] is not None

    async def project(self, project_id: int) -> Project | None:
        return await self.session.get(Project, project_id)

    async def project_by_token(self, token: str) -> Project | None:
        return (await self.session.execute(select(Project).where(Project.api_token == token))).scalar_one_or_none()

    async def is_member(self, project_id: int, user_id: int) -> bool:
        return await self.session.get(ProjectMember, (project_id, user_id)) is not None

    async def user(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def users_by_ids(self, ids: list[int]) -> dict[int, User]:
        if not ids:
            return {}
        rows = (await self.session.execute(select(User).where(User.id.in_(set(ids))))).scalars()
        return {user.id: user for user in rows}

    async def user_by_email(self, email: str) -> User | None:
        return (await self.session.execute(select(User).where(User.email == email))).scalar_one_or_none()

    async def first_user(self) -> User | None:
        return (await self.session.execute(select(User).order_by(User.id).limit(1))).scalar_one_or_none()

    async def first_project(self) -> Project | None:
        return (await self.session.execute(select(Project).order_by(Project.id).limit(1))).scalar_one_or_none()

    def add(self, obj) -> None:
        self.session.add(obj)
