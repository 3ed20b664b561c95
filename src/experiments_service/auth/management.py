"""Key management over HTTP, the current user and the projects a key may see.

A key manages only keys no more powerful than itself (its scopes and its projects cover
theirs), so a key scoped to one project can neither mint nor roll its way into another.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.dependencies import CURRENT, single_scoped_project
from experiments_service.auth.keys import (
    hash_key,
    mask_key,
    new_personal_api_key,
    scope_allows,
    scopes_cover,
    teams_cover,
    valid_scope,
)
from experiments_service.auth.repository import AuthRepository
from experiments_service.auth.schemas import (
    PersonalAPIKeyCreate,
    PersonalAPIKeyOut,
    PersonalAPIKeyUpdate,
    ProjectOut,
    UserBasic,
    UserMe,
)
from experiments_service.auth.service import issue_personal_api_key
from experiments_service.errors import NotFound, PermissionDenied, ValidationError
from experiments_service.models import PersonalAPIKey, User, utcnow
from experiments_service.pagination import PageRequest

# PostHog's cap (personal_api_key.py), applied to keys made over HTTP.
MAX_API_KEYS_PER_USER = 10
BEYOND_OWN_RIGHTS = "A personal API key can only manage keys within its own scopes and projects."


def _covers(caller: PersonalAPIKey, other: PersonalAPIKey) -> bool:
    return scopes_cover(list(caller.scopes or []), list(other.scopes or [])) and teams_cover(
        caller.scoped_teams, other.scoped_teams
    )


class KeyManagement:
    """What the presenting key (`caller`, of `user`) may see and do with the user's keys."""

    def __init__(self, session: AsyncSession, user: User, caller: PersonalAPIKey):
        self.repo = AuthRepository(session)
        self.session = session
        self.user = user
        self.caller = caller

    async def list(self) -> list[PersonalAPIKeyOut]:
        keys = await self.repo.keys_of_user(self.user.id)
        return [PersonalAPIKeyOut.of(key) for key in keys if key.id == self.caller.id or _covers(self.caller, key)]

    async def get(self, key_id: str) -> PersonalAPIKey:
        """The caller (`@current` or its own id) or a key it covers; 404 for anything else."""
        if key_id == CURRENT or key_id == str(self.caller.id):
            return self.caller
        try:
            wanted = int(key_id)
        except ValueError:
            raise NotFound() from None
        key = await self.repo.key_of_user(self.user.id, wanted) if 0 < wanted < 2**31 else None
        if key is None or not _covers(self.caller, key):
            raise NotFound()
        return key

    async def retrieve(self, key_id: str) -> PersonalAPIKey:
        """As PostHog: any key may read itself; reading another needs `personal_api_key:read`."""
        if key_id not in (CURRENT, str(self.caller.id)) and not scope_allows(
            list(self.caller.scopes or []), "personal_api_key:read"
        ):
            raise PermissionDenied("API key missing required scope 'personal_api_key:read'")
        return await self.get(key_id)

    async def _checked_rights(self, scopes: list[str], scoped_teams: list[int] | None) -> list[int] | None:
        """Validate a key's scopes and projects (PostHog's messages) and that the caller covers
        them; returns the projects, deduplicated (None: all of the user's)."""
        if not scopes:
            raise ValidationError("This list may not be empty.", code="empty", attr="scopes")
        for scope in scopes:
            if not valid_scope(scope):
                raise ValidationError(f"Invalid scope: {scope}", attr="scopes")
        teams = list(dict.fromkeys(int(team) for team in scoped_teams or [])) or None
        if teams and len(await self.repo.member_project_ids(self.user.id, teams)) != len(teams):
            raise ValidationError("You must be a member of all teams that you are scoping the key to.", attr="scoped_teams")
        if not scopes_cover(list(self.caller.scopes or []), scopes) or not teams_cover(self.caller.scoped_teams, teams):
            raise PermissionDenied(BEYOND_OWN_RIGHTS)
        return teams

    @staticmethod
    def _no_organizations(organizations: list[str] | None) -> None:
        if organizations:
            raise ValidationError(
                "You must be a member of all organizations that you are scoping the key to.",
                attr="scoped_organizations",
            )

    async def create(self, body: PersonalAPIKeyCreate) -> PersonalAPIKeyOut:
        self._no_organizations(body.scoped_organizations)
        wanted_teams = self.caller.scoped_teams if body.scoped_teams is None else body.scoped_teams
        scoped_teams = await self._checked_rights(list(body.scopes), wanted_teams)
        if len(await self.repo.keys_of_user(self.user.id)) >= MAX_API_KEYS_PER_USER:
            raise ValidationError(
                f"You can only have {MAX_API_KEYS_PER_USER} personal API keys. "
                "Remove an existing key before creating a new one."
            )
        issued = await issue_personal_api_key(
            self.session, self.user, list(body.scopes), label=body.label, scoped_teams=scoped_teams
        )
        return PersonalAPIKeyOut.of(issued.key, issued.secret)

    async def update(self, key_id: str, body: PersonalAPIKeyUpdate) -> PersonalAPIKeyOut:
        """Change a key's label, scopes or projects, never beyond what the caller holds."""
        key = await self.get(key_id)
        sent = body.model_fields_set
        self._no_organizations(body.scoped_organizations)
        scopes = list(body.scopes) if "scopes" in sent and body.scopes is not None else list(key.scopes or [])
        teams = body.scoped_teams if "scoped_teams" in sent else key.scoped_teams
        key.scoped_teams = await self._checked_rights(scopes, teams)
        key.scopes = scopes
        if body.label is not None:
            key.label = body.label
        await self.session.flush()
        return PersonalAPIKeyOut.of(key)

    async def roll(self, key_id: str) -> PersonalAPIKeyOut:
        """A new secret for the key; the old one stops working when this commits."""
        key = await self.get(key_id)
        secret = new_personal_api_key()
        key.secure_value = hash_key(secret)
        key.mask_value = mask_key(secret)
        key.last_rolled_at = utcnow()
        await self.session.flush()
        return PersonalAPIKeyOut.of(key, secret)

    async def delete(self, key_id: str) -> None:
        await self.repo.delete(await self.get(key_id))

    async def projects(self, page: PageRequest) -> dict:
        projects, count = await self.repo.visible_projects(self.user.id, self.caller.scoped_teams, page)
        return page.envelope([ProjectOut.of(project) for project in projects], count)

    async def me(self) -> UserMe:
        team = None
        if self.caller.scoped_teams and len(self.caller.scoped_teams) == 1:
            project_id = single_scoped_project(self.caller)
            if await self.repo.is_member(project_id, self.user.id):
                team = ProjectOut.of(await self.repo.project(project_id))
        return UserMe(**UserBasic.of(self.user).model_dump(), date_joined=self.user.created_at, team=team)
