"""SQL for projects, users, memberships and keys."""

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import PersonalAPIKey, Project, ProjectMember, User
from experiments_service.pagination import fetch_page


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

    async def key_by_hash(self, secure_value: str) -> PersonalAPIKey | None:
        query = select(PersonalAPIKey).where(PersonalAPIKey.secure_value == secure_value)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def key_with_user(self, secure_value: str) -> tuple[PersonalAPIKey, User] | None:
        row = (
            await self.session.execute(
                select(PersonalAPIKey, User)
                .join(User, User.id == PersonalAPIKey.user_id)
                .where(PersonalAPIKey.secure_value == secure_value)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def touch_key(self, key_id: int, now: datetime, stale_before: datetime) -> None:
        """Set `last_used_at` unless a concurrent request just did (then no row changes)."""
        await self.session.execute(
            update(PersonalAPIKey)
            .where(
                PersonalAPIKey.id == key_id,
                or_(PersonalAPIKey.last_used_at.is_(None), PersonalAPIKey.last_used_at < stale_before),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )

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

    async def first_member(self, project_id: int) -> User | None:
        query = (
            select(User)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id)
            .order_by(ProjectMember.created_at, User.id)
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def first_project(self) -> Project | None:
        return (await self.session.execute(select(Project).order_by(Project.id).limit(1))).scalar_one_or_none()

    async def keys_of_user(self, user_id: int) -> list[PersonalAPIKey]:
        query = (
            select(PersonalAPIKey)
            .where(PersonalAPIKey.user_id == user_id)
            .order_by(PersonalAPIKey.created_at.desc(), PersonalAPIKey.id.desc())
        )
        return list((await self.session.execute(query)).scalars())

    async def key_of_user(self, user_id: int, key_id: int) -> PersonalAPIKey | None:
        query = select(PersonalAPIKey).where(PersonalAPIKey.id == key_id, PersonalAPIKey.user_id == user_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def member_project_ids(self, user_id: int, project_ids: list[int]) -> set[int]:
        """Which of `project_ids` the user is a member of."""
        query = select(ProjectMember.project_id).where(
            ProjectMember.user_id == user_id, ProjectMember.project_id.in_(set(project_ids))
        )
        return set((await self.session.execute(query)).scalars())

    async def visible_projects(self, user_id: int, scoped_teams: list[int] | None, page) -> tuple[list[Project], int]:
        """One page of the projects a key may see: the user's, narrowed to the key's scope."""
        query = (
            select(Project)
            .join(ProjectMember, and_(ProjectMember.project_id == Project.id, ProjectMember.user_id == user_id))
            .order_by(Project.id)
        )
        if scoped_teams:
            query = query.where(Project.id.in_(set(scoped_teams)))
        return await fetch_page(self.session, query, page)

    async def delete(self, obj) -> None:
        await self.session.delete(obj)
        await self.session.flush()

    def add(self, obj) -> None:
        self.session.add(obj)
