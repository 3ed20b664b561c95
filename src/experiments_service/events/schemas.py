"""Response shapes of the capture endpoints."""

from typing import Literal

from pydantic import BaseModel


class CaptureResponse(BaseModel):
    """PostHog's capture answer: accepted (invalid events of a batch are dropped silently)."""

    status: Literal[1] = 1


class CaptureErrorBody(BaseModel):
    type: str
    code: str
    detail: str
    attr: str | None = None
