"""SQL for projects, users, memberships and keys."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import PersonalAPIKey, Project, ProjectMember, User


class AuthRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def key_with_user(self, secure_value: str) -> tuple[PersonalAPIKey, User] | None:
        row = (
            await self.session.execute(
                select(PersonalAPIKey, User)
                .join(User, User.id == PersonalAPIKey.user_id)
                .where(PersonalAPIKey.secure_value == secure_value)
            )
        ).first()
        return (row[0], row[1]) if row else None

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
