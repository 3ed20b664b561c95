"""Renderings of users shared by every domain."""

from pydantic import BaseModel

from experiments_service.models import User


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
