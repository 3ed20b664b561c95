"""Renderings of users shared by every domain."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments_service.models import PersonalAPIKey, Project, User


class UserBasic(BaseModel):
    """PostHog's `UserBasic`, as rendered in `created_by`."""

    id: int
    uuid: str
    distinct_id: str
    first_name: str
    last_name: str
    email: str
    is_email_verified: bool
    hedgehog_config: dict | None = None
    role_at_organization: str | None = None

    @classmethod
    def of(cls, user: User | None) -> "UserBasic | None":
        if user is None:
            return None
        return cls(
            id=user.id,
            uuid=str(user.uuid),
            distinct_id=user.distinct_id,
            first_name=user.first_name,
            last_name=user.last_name,
            email=user.email,
            is_email_verified=user.is_email_verified,
        )


# --- key management, the current user and projects (PostHog's shapes) -----------------------

class PersonalAPIKeyOut(BaseModel):
    """PostHog's `PersonalAPIKeySerializer`: `value` only in the answers that mint a secret."""

    id: int
    label: str
    value: str | None = None
    mask_value: str
    created_at: datetime
    last_used_at: datetime | None
    last_rolled_at: datetime | None
    user_id: int
    scopes: list[str]
    scoped_teams: list[int] | None
    scoped_organizations: list[str] | None = None

    @classmethod
    def of(cls, key: PersonalAPIKey, value: str | None = None) -> "PersonalAPIKeyOut":
        return cls(
            id=key.id,
            label=key.label,
            value=value,
            mask_value=key.mask_value,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            last_rolled_at=key.last_rolled_at,
            user_id=key.user_id,
            scopes=list(key.scopes or []) or ["*"],
            scoped_teams=None if key.scoped_teams is None else [int(team) for team in key.scoped_teams],
        )


class PersonalAPIKeyUpdate(BaseModel):
    """A change to a key; `scoped_teams` `[]` or null widens it to all of its user's projects."""

    model_config = ConfigDict(extra="ignore")

    label: str | None = Field(default=None, min_length=1, max_length=40)
    scopes: list[str] | None = None
    scoped_teams: list[int] | None = None
    scoped_organizations: list[str] | None = None

    @field_validator("label")
    @classmethod
    def _no_nul(cls, label: str | None) -> str | None:
        # PostgreSQL cannot store NUL; refuse it on SQLite too, so both behave alike.
        if label is not None and "\x00" in label:
            raise ValueError("Null characters are not allowed.")
        return label


class PersonalAPIKeyCreate(PersonalAPIKeyUpdate):
    """A new key; `scoped_teams` omitted means the creating key's own projects."""

    label: str = Field(min_length=1, max_length=40)
    scopes: list[str]


class ProjectOut(BaseModel):
    """PostHog's basic project rendering (the fields this service has)."""

    id: int
    uuid: str
    name: str
    api_token: str
    timezone: str
    created_at: datetime

    @classmethod
    def of(cls, project: Project) -> "ProjectOut":
        return cls(
            id=project.id,
            uuid=str(project.uuid),
            name=project.name,
            api_token=project.api_token,
            timezone=project.timezone,
            created_at=project.created_at,
        )


class UserMe(UserBasic):
    """`/api/users/@me/`: who the key belongs to, and its project when it has exactly one."""

    date_joined: datetime
    team: ProjectOut | None
