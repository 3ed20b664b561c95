"""Creating projects, users and keys (used by the CLI and by test factories)."""

from dataclasses import dataclass
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.keys import hash_key, mask_key, new_personal_api_key, new_project_api_key
from experiments_service.auth.repository import AuthRepository
from experiments_service.models import FlagDefinitionsVersion, PersonalAPIKey, Project, ProjectMember, User

def owner_email(project: Project) -> str:
    """The address of the user `bootstrap` makes for a project: one owner per project, so a
    project's keys belong to a user who is a member of that project alone."""
    return f"admin-{project.id}@experiments.local"


@dataclass
class IssuedKey:
    """A freshly minted key; `secret` is the only time the plain value exists."""

    secret: str
    user: User
    key: PersonalAPIKey


async def create_project(session: AsyncSession, name: str) -> Project:
    project = Project(name=name, api_token=new_project_api_key())
    session.add(project)
    await session.flush()
    session.add(FlagDefinitionsVersion(project_id=project.id, version=0))
    return project


async def ensure_user(session: AsyncSession, email: str, project: Project | None = None) -> User:
    """Find or create the user; make it a member of `project` when given."""
    repo = AuthRepository(session)
    user = await repo.user_by_email(email)
    if user is None:
        first_name = email.split("@", 1)[0]
        user = User(email=email, first_name=first_name, last_name="", distinct_id=str(uuid4()))
        session.add(user)
        await session.flush()
    if project is not None and not await repo.is_member(project.id, user.id):
        session.add(ProjectMember(project_id=project.id, user_id=user.id))
        await session.flush()
    return user


async def bootstrap_user(session: AsyncSession, project: Project) -> User:
    """The project's owner, whom keys belong to when no email is given: its first member
    (created on first use)."""
    owner = await AuthRepository(session).first_member(project.id)
    if owner is not None:
        return owner
    return await ensure_user(session, owner_email(project), project)


async def issue_personal_api_key(
    session: AsyncSession,
    user: User,
    scopes: list[str],
    label: str = "cli",
    scoped_teams: list[int] | None = None,
) -> IssuedKey:
    """Mint a key for `user`; `scoped_teams` limits it to those projects (None: all of the user's)."""
    secret = new_personal_api_key()
    key = PersonalAPIKey(
        user_id=user.id,
        label=label,
        secure_value=hash_key(secret),
        mask_value=mask_key(secret),
        scopes=scopes,
        scoped_teams=scoped_teams,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(secret=secret, user=user, key=key)
