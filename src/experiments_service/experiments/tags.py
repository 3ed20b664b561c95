"""Experiment tags: set on create and update, listed on every experiment, changed in bulk."""

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository

SKIPPED_REASON = "Not found or no edit access"


def normalized_tags(tags: list[str] | None) -> list[str]:
    """Tags as PostHog stores them: trimmed, lower-case, each once."""
    return sorted({tag.strip().lower() for tag in tags or [] if isinstance(tag, str) and tag.strip()})


class BulkUpdateTagsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: list[int] = Field(min_length=1, max_length=500)
    action: Literal["add", "remove", "set"]
    tags: list[str] = Field(default_factory=list)


class TaggedExperiment(BaseModel):
    id: int
    tags: list[str]


class SkippedExperiment(BaseModel):
    id: int
    reason: str


class BulkUpdateTagsResult(BaseModel):
    updated: list[TaggedExperiment]
    skipped: list[SkippedExperiment]


class TagService:
    def __init__(self, session: AsyncSession, project_id: int):
        self.repo = AuxiliaryRepository(session, project_id)

    async def tags_of(self, experiment_ids: list[int]) -> dict[int, list[str]]:
        return await self.repo.tags_of(experiment_ids)

    async def set_tags(self, experiment_id: int, tags: list[str] | None) -> None:
        await self.repo.replace_tags(experiment_id, normalized_tags(tags))

    async def bulk_update(self, body: BulkUpdateTagsRequest) -> BulkUpdateTagsResult:
        """Add, remove or set tags on each live experiment of the project; other ids are skipped."""
        wanted = normalized_tags(body.tags)
        ids = list(dict.fromkeys(body.ids))
        live = await self.repo.live_experiment_ids(ids)
        current = await self.repo.tags_of(live)
        updated: list[TaggedExperiment] = []
        for experiment_id in ids:
            if experiment_id not in live:
                continue
            tags = self._applied(body.action, current[experiment_id], wanted)
            await self.repo.replace_tags(experiment_id, tags)
            updated.append(TaggedExperiment(id=experiment_id, tags=tags))
        skipped = [SkippedExperiment(id=i, reason=SKIPPED_REASON) for i in ids if i not in live]
        return BulkUpdateTagsResult(updated=updated, skipped=skipped)

    @staticmethod
    def _applied(action: str, current: list[str], wanted: list[str]) -> list[str]:
        if action == "add":
            return sorted(set(current) | set(wanted))
        if action == "remove":
            return sorted(set(current) - set(wanted))
        return wanted


def tags_in_query(raw: str | None) -> list[str] | None:
    """`tags`/`excluded_tags` list filters: a JSON list (`["a","b"]`) or a comma-separated list."""
    if not raw:
        return None
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.split(",")
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return None
    return normalized_tags([str(item) for item in parsed]) or None
