"""All SQL for feature flags."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, event, func, or_, select, text, update
from sqlalchemy.orm import Session

from experiments_service.db import insert_on_conflict
from experiments_service.flags.validation import CONTROL
from experiments_service.models import (
    Experiment,
    FeatureFlag,
    FlagDefinitionsVersion,
    GroupTypeMapping,
    HashKeyOverride,
    Person,
)
from experiments_service.repository import ProjectRepository

# PostgreSQL channel on which every flag write announces its project id (see flags/cache.py).
DEFINITIONS_CHANNEL = "flag_definitions"
# Key in `session.info` collecting the projects whose definitions this transaction changed.
CHANGED_PROJECTS = "changed_flag_projects"


# Bump a project's stamp; PostgreSQL announces it in the same statement (one round trip).
_BUMP_VERSION = (
    update(FlagDefinitionsVersion)
    .where(FlagDefinitionsVersion.project_id == bindparam("changed_project_id"))
    .values(version=FlagDefinitionsVersion.version + 1)
)
_BUMP_VERSION_AND_NOTIFY = text(
    "WITH bumped AS (UPDATE flag_definitions_versions SET version = version + 1, updated_at = now() "
    "WHERE project_id = :changed_project_id RETURNING project_id) "
    f"SELECT pg_notify('{DEFINITIONS_CHANNEL}', project_id::text) FROM bumped"
)


@dataclass(frozen=True)
class EligibleFlagsSpec:
    """The eligible-flags list's filters, window and order, already validated."""

    limit: int
    offset: int
    order_field: str = "created_at"
    descending: bool = True
    search: str | None = None
    active: bool | None = None
    created_by_id: int | None = None
    evaluation_runtime: str | None = None
    has_evaluation_contexts: bool | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@event.listens_for(Session, "before_commit")
def _write_definitions_versions(session: Session) -> None:
    """Bump the stamp of every project whose flags this transaction changed, and announce it.

    On PostgreSQL the NOTIFY is delivered at commit, so listeners never see a change that
    rolled back; this process's own cache is evicted after commit (flags/cache.py).
    """
    changed = session.info.get(CHANGED_PROJECTS)
    if not changed:
        return
    statement = _BUMP_VERSION_AND_NOTIFY if session.get_bind().dialect.name == "postgresql" else _BUMP_VERSION
    for project_id in sorted(changed):
        session.execute(statement, {"changed_project_id": project_id})


class FlagRepository(ProjectRepository):
    def _scoped(self) -> Select[tuple[FeatureFlag]]:
        return self.scoped(FeatureFlag)

    async def get(self, flag_id: int, *, include_deleted: bool = True, for_update: bool = False) -> FeatureFlag | None:
        query = self._scoped().where(FeatureFlag.id == flag_id)
        if not include_deleted:
            query = query.where(FeatureFlag.deleted.is_(False))
        return await self.one(query, for_update=for_update)

    async def of_experiment(
        self, experiment_id: int, *, include_deleted: bool = False, for_update: bool = False
    ) -> FeatureFlag | None:
        """The flag behind an experiment of this project, in one statement (locked before the experiment)."""
        flag_id = select(Experiment.feature_flag_id).where(
            Experiment.project_id == self.project_id, Experiment.id == experiment_id
        )
        if not include_deleted:
            flag_id = flag_id.where(Experiment.deleted.is_(False))
        return await self.one(self._scoped().where(FeatureFlag.id == flag_id.scalar_subquery()), for_update=for_update)

    async def flags_by_ids(self, flag_ids: Iterable[int]) -> dict[int, FeatureFlag]:
        return await self.by_ids(FeatureFlag, flag_ids)

    async def using_holdout(self, holdout_id: int) -> Sequence[FeatureFlag]:
        """The flags of every experiment that uses this holdout, locked, in id order."""
        using = select(Experiment.feature_flag_id).where(
            Experiment.project_id == self.project_id, Experiment.holdout_id == holdout_id
        )
        query = self._scoped().where(FeatureFlag.id.in_(using)).order_by(FeatureFlag.id)
        return (await self.session.execute(self.locked(query))).scalars().all()

    async def eligible_for_experiments(self, spec: EligibleFlagsSpec) -> tuple[list[FeatureFlag], int]:
        """One page of the live flags listed for experiments (`experiment_listing` rule), and the total."""
        variants = FeatureFlag.filters["multivariate"]["variants"]
        conditions: list[ColumnElement[bool]] = [
            FeatureFlag.project_id == self.project_id,
            FeatureFlag.deleted.is_(False),
            # PostHog's list rule: at least two variants, `control` first.
            variants[0]["key"].as_string() == CONTROL,
            variants[1]["key"].as_string().is_not(None),
        ]
        if spec.search:
            pattern = f"%{_escape_like(spec.search)}%"
            conditions.append(or_(FeatureFlag.key.ilike(pattern, escape="\\"), FeatureFlag.name.ilike(pattern, escape="\\")))
        if spec.active is not None:
            conditions.append(FeatureFlag.active.is_(spec.active))
        if spec.created_by_id is not None:
            conditions.append(FeatureFlag.created_by_id == spec.created_by_id)
        if spec.evaluation_runtime:
            conditions.append(FeatureFlag.evaluation_runtime == spec.evaluation_runtime)
        if spec.has_evaluation_contexts is not None:
            tag_count = func.coalesce(func.json_array_length(FeatureFlag.evaluation_tags), 0)
            conditions.append(tag_count > 0 if spec.has_evaluation_contexts else tag_count == 0)
        column = getattr(FeatureFlag, spec.order_field)
        ordering = [column.desc(), FeatureFlag.id.desc()] if spec.descending else [column.asc(), FeatureFlag.id]
        count = await self.session.scalar(select(func.count()).select_from(FeatureFlag).where(*conditions))
        query = select(FeatureFlag).where(*conditions).order_by(*ordering).limit(spec.limit).offset(spec.offset)
        return list((await self.session.execute(query)).scalars()), int(count or 0)

    async def group_types(self) -> list[GroupTypeMapping]:
        query = select(GroupTypeMapping).where(GroupTypeMapping.project_id == self.project_id)
        return list((await self.session.execute(query.order_by(GroupTypeMapping.group_type_index))).scalars())

    async def get_live_by_key(self, key: str) -> FeatureFlag | None:
        """The non-deleted flag with this key (deleted flags never match a key)."""
        query = self._scoped().where(FeatureFlag.key == key, FeatureFlag.deleted.is_(False))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def key_taken(self, key: str, *, excluding_id: int | None = None) -> bool:
        query = self._scoped().where(FeatureFlag.key == key, FeatureFlag.deleted.is_(False))
        if excluding_id is not None:
            query = query.where(FeatureFlag.id != excluding_id)
        return (await self.session.execute(query.limit(1))).first() is not None

    def live_query(self, *, search: str | None = None, active: bool | None = None) -> Select:
        """Live flags, newest first, optionally matching `search` (key or name) and `active`."""
        query = self._scoped().where(FeatureFlag.deleted.is_(False))
        if search:
            needle = search.lower()
            query = query.where(
                or_(
                    func.lower(FeatureFlag.key).contains(needle, autoescape=True),
                    func.lower(FeatureFlag.name).contains(needle, autoescape=True),
                )
            )
        if active is not None:
            query = query.where(FeatureFlag.active.is_(active))
        return query.order_by(FeatureFlag.created_at.desc(), FeatureFlag.id.desc())

    async def experiment_ids_by_flag(self, flag_ids: list[int]) -> dict[int, list[int]]:
        """Ids of the live experiments using each flag (PostHog's `experiment_set`)."""
        if not flag_ids:
            return {}
        rows = await self.session.execute(
            select(Experiment.feature_flag_id, Experiment.id)
            .where(Experiment.project_id == self.project_id, Experiment.feature_flag_id.in_(flag_ids), Experiment.deleted.is_(False))
            .order_by(Experiment.id)
        )
        found: dict[int, list[int]] = {flag_id: [] for flag_id in flag_ids}
        for flag_id, experiment_id in rows:
            found[flag_id].append(experiment_id)
        return found

    async def flags_depending_on(self, flag: FeatureFlag) -> list[FeatureFlag]:
        """Live, active flags whose conditions test `flag` (a `flag` property naming its id or key)."""
        names = {str(flag.id), flag.key}
        query = self._scoped().where(FeatureFlag.deleted.is_(False), FeatureFlag.active.is_(True), FeatureFlag.id != flag.id)
        dependents = []
        for other in (await self.session.execute(query.order_by(FeatureFlag.key))).scalars():
            groups = (other.filters or {}).get("groups") or []
            if any(
                isinstance(prop, dict) and prop.get("type") == "flag" and str(prop.get("key")) in names
                for group in groups
                if isinstance(group, dict)
                for prop in group.get("properties") or []
            ):
                dependents.append(other)
        return dependents

    async def live_flags(self) -> list[FeatureFlag]:
        """Every flag that is not deleted, in id order (what evaluation and SDK definitions serve)."""
        rows = await self.session.execute(self._scoped().where(FeatureFlag.deleted.is_(False)).order_by(FeatureFlag.id))
        return list(rows.scalars())

    async def definitions_version(self) -> int:
        query = select(FlagDefinitionsVersion.version).where(FlagDefinitionsVersion.project_id == self.project_id)
        return (await self.session.execute(query)).scalar_one_or_none() or 0

    def bump_definitions_version(self) -> None:
        """Mark this project's flag definitions changed (caches in every process re-load).

        The stamp itself is written just before commit (`_write_definitions_versions`), so the
        per-project row lock is held for the commit only, not for the whole request.
        """
        self.session.info.setdefault(CHANGED_PROJECTS, set()).add(self.project_id)

    async def person_properties(self, distinct_id: str) -> dict[str, Any]:
        """Stored properties of the person with this distinct id (empty when unknown)."""
        query = select(Person.properties).where(Person.project_id == self.project_id, Person.distinct_id == distinct_id)
        return (await self.session.execute(query)).scalar_one_or_none() or {}

    async def hash_key_overrides(self, distinct_id: str) -> dict[str, str]:
        """Experience-continuity identifiers stored for this distinct id, by flag key."""
        query = select(HashKeyOverride.feature_flag_key, HashKeyOverride.hash_key).where(
            HashKeyOverride.project_id == self.project_id, HashKeyOverride.distinct_id == distinct_id
        )
        return {key: hash_key for key, hash_key in (await self.session.execute(query)).all()}

    async def add_hash_key_overrides(self, distinct_id: str, hash_key: str, flag_keys: list[str]) -> None:
        """Store `hash_key` for these flags unless an override exists already (first one wins).

        Identifiers longer than the columns hold are not stored (the flag then hashes as usual).
        """
        longest = min(HashKeyOverride.distinct_id.type.length, HashKeyOverride.hash_key.type.length)
        if not flag_keys or len(distinct_id) > longest or len(hash_key) > longest:
            return
        rows = [
            {"project_id": self.project_id, "distinct_id": distinct_id, "feature_flag_key": key, "hash_key": hash_key}
            for key in sorted(flag_keys)
        ]
        await self.session.execute(
            insert_on_conflict(self.session, HashKeyOverride.__table__).on_conflict_do_nothing(
                index_elements=[HashKeyOverride.project_id, HashKeyOverride.distinct_id, HashKeyOverride.feature_flag_key]
            ),
            rows,
        )
