"""In-memory flag definitions per project: the `/flags` hot path reads no flag rows.

Each process keeps, per project, the compiled flags, the SDK definitions body and a few
per-flag facts, stamped with the project's `flag_definitions_versions.version`. An entry
stops being served when:

* this process commits a flag change (a SQLAlchemy `after_commit` hook evicts it at once);
* another process commits one: on PostgreSQL the write's `NOTIFY flag_definitions` reaches
  the listener task of every process, which evicts the entry;
* as a fallback for missed notifications (and on SQLite, where several processes may share
  one file), the entry is older than `flag_cache_ttl_seconds`: the next request re-reads the
  version stamp (one primary-key lookup) and reloads only if it moved.

Project API tokens resolve to project ids through the same cache.
"""

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from experiments_service.auth.keys import plausible_project_key
from experiments_service.auth.repository import AuthRepository
from experiments_service.db import Database
from experiments_service.flags.cohorts import person_property_keys, referenced_cohorts
from experiments_service.flags.evaluation import CompiledFlags, FlagResult
from experiments_service.flags.groups import GroupTypes
from experiments_service.flags.repository import CHANGED_PROJECTS, DEFINITIONS_CHANNEL, FlagRepository
from experiments_service.flags.schemas import MinimalFeatureFlag
from experiments_service.observability.metrics import FLAG_CACHE_HITS, FLAG_CACHE_INVALIDATIONS, FLAG_CACHE_MISSES

log = logging.getLogger(__name__)

_PERSON_PROPERTY_TYPES = (None, "person")


@dataclass(frozen=True, slots=True)
class FlagFacts:
    """What a `/flags` response says about a flag besides its value."""

    id: int
    version: int
    description: str
    has_experiment: bool
    continuity: bool
    person_properties: frozenset[str]
    # Static cohorts the flag's conditions test (membership is looked up per request).
    static_cohorts: frozenset[int] = frozenset()


@dataclass(slots=True)
class ProjectFlags:
    """One project's definitions, compiled, at one version stamp."""

    project_id: int
    version: int
    compiled: CompiledFlags
    facts: dict[str, FlagFacts]
    definitions_body: bytes
    etag: str
    checked_at: float = field(default_factory=time.monotonic)
    # Answers for a request that does not narrow the flags, worked out once.
    all_person_properties: frozenset[str] = field(init=False)
    all_continuity_flags: list[str] = field(init=False)
    # A flag's result rendered as `"key": {details}`; results repeat, so each is serialised once.
    rendered_details: dict[FlagResult, bytes] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.all_person_properties = frozenset().union(*(fact.person_properties for fact in self.facts.values()))
        self.all_continuity_flags = [key for key, fact in self.facts.items() if fact.continuity]

    def person_properties_needed(self, keys: Iterable[str] | None) -> frozenset[str]:
        """Person property keys the conditions of these flags (default: all) read."""
        if keys is None:
            return self.all_person_properties
        return frozenset().union(*(self.facts[k].person_properties for k in keys if k in self.facts))

    def static_cohorts_needed(self, keys: Iterable[str] | None) -> frozenset[int]:
        """Static cohorts whose membership these flags (default: all) need."""
        facts = self.facts.values() if keys is None else [self.facts[k] for k in keys if k in self.facts]
        return frozenset().union(*(fact.static_cohorts for fact in facts))

    def continuity_flags(self, keys: Iterable[str] | None) -> list[str]:
        """Keys of the active flags (among `keys`) that keep experience continuity."""
        if keys is None:
            return self.all_continuity_flags
        return [key for key in keys if key in self.facts and self.facts[key].continuity]


def _person_property_keys(flag_key: str, filters: Mapping[str, Any]) -> frozenset[str]:
    keys: set[str] = set()
    # Like the evaluator: a legacy flag without `groups` is one condition over `filters.properties`.
    groups = filters.get("groups") if "groups" in filters else [{"properties": filters.get("properties")}]
    for group in [*(groups or []), *(filters.get("super_groups") or [])]:
        if not isinstance(group, dict) or group.get("aggregation_group_type_index") is not None:
            continue
        for prop in group.get("properties") or []:
            if isinstance(prop, dict) and prop.get("type") in _PERSON_PROPERTY_TYPES and prop.get("key") is not None:
                keys.add(str(prop["key"]))
    if filters.get("feature_enrollment"):
        keys.add(f"$feature_enrollment/{flag_key}")
    return frozenset(keys)


def _flag_cohorts(filters: Mapping[str, Any], cohorts: Mapping[int, Mapping[str, Any]]) -> set[int]:
    """Cohorts a flag's conditions name, with the cohorts those name in turn (known ones only)."""
    groups = filters.get("groups") if "groups" in filters else [{"properties": filters.get("properties")}]
    pending = set().union(
        *(referenced_cohorts(group.get("properties")) for group in groups or [] if isinstance(group, dict))
    )
    found: set[int] = set()
    while pending:
        cohort = pending.pop()
        if cohort in cohorts and cohort not in found:
            found.add(cohort)
            pending |= referenced_cohorts(cohorts[cohort].get("properties"))
    return found


def build_project_flags(
    project_id: int,
    version: int,
    flags: list[dict[str, Any]],
    group_type_mapping: dict[str, str],
    experiment_flag_ids: set[int],
    cohorts: Mapping[int, Mapping[str, Any]] | None = None,
) -> ProjectFlags:
    """Compile one project's live flags (dicts in the MinimalFeatureFlag shape) with its cohorts
    (`{id: {"is_static": bool, "properties": <property group>}}`, deleted ones left out)."""
    cohorts = cohorts or {}
    compiled = CompiledFlags(flags, {int(index): name for index, name in group_type_mapping.items()}, cohorts)
    used = {flag["key"]: _flag_cohorts(flag["filters"] or {}, cohorts) for flag in flags}
    facts = {
        flag["key"]: FlagFacts(
            id=flag["id"],
            version=flag["version"],
            description=flag["name"],
            has_experiment=flag["id"] in experiment_flag_ids,
            continuity=bool(flag["ensure_experience_continuity"]),
            person_properties=_person_property_keys(flag["key"], flag["filters"] or {}).union(
                *(person_property_keys(cohorts[cohort].get("properties")) for cohort in used[flag["key"]])
            ),
            static_cohorts=frozenset(cohort for cohort in used[flag["key"]] if cohorts[cohort].get("is_static")),
        )
        for flag in flags
        if flag["active"] and not flag["deleted"]
    }
    served = [flag for flag in flags if flag["evaluation_runtime"] != "client"]
    # Local-evaluation SDKs read dynamic cohorts' property groups by id; static ones need the server.
    local_cohorts = {
        str(cohort): cohorts[cohort].get("properties") or {}
        for cohort in sorted(set().union(*(used[flag["key"]] for flag in served)))
        if not cohorts[cohort].get("is_static")
    }
    # Server SDKs poll these; flags restricted to client runtimes are not theirs to evaluate.
    body = orjson.dumps(
        {
            "flags": served,
            "group_type_mapping": group_type_mapping,
            "cohorts": local_cohorts,
        }
    )
    etag = '"' + hashlib.sha1(body).hexdigest() + '"'
    return ProjectFlags(project_id, version, compiled, facts, body, etag)


_live_caches: "weakref.WeakSet[FlagCache]" = weakref.WeakSet()


class FlagCache:
    def __init__(self, db: Database, ttl_seconds: float):
        self.db = db
        self.ttl = ttl_seconds
        self._entries: dict[int, ProjectFlags] = {}
        self._loads: dict[int, asyncio.Task[ProjectFlags]] = {}
        self._checking: set[int] = set()
        # Bumped by every eviction: a load that raced an eviction must not be kept.
        self._evictions: dict[int, int] = {}
        # token -> (project id or None when unknown, monotonic time of the lookup)
        self._tokens: dict[str, tuple[int | None, float]] = {}
        _live_caches.add(self)

    def evict(self, project_id: int) -> None:
        self._evictions[project_id] = self._evictions.get(project_id, 0) + 1
        if self._entries.pop(project_id, None) is not None:
            FLAG_CACHE_INVALIDATIONS.inc()

    def evict_all(self) -> None:
        for project_id in list(self._evictions.keys() | self._entries.keys()):
            self.evict(project_id)

    async def project_id_for_token(self, token: str) -> int | None:
        """Known tokens are cached for good; unknown ones for one TTL (a new project appears soon)."""
        if not plausible_project_key(token):
            return None
        cached = self._tokens.get(token)
        if cached is not None and (cached[0] is not None or time.monotonic() - cached[1] < self.ttl):
            return cached[0]
        async with self.db.sessionmaker() as session:
            project = await AuthRepository(session).project_by_token(token)
        project_id = project.id if project is not None else None
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[token] = (project_id, time.monotonic())
        return project_id

    async def get(self, project_id: int) -> ProjectFlags:
        """The project's definitions: from memory, re-validated once per TTL."""
        entry = self._entries.get(project_id)
        if entry is None:
            FLAG_CACHE_MISSES.inc()
            return await self._load_once(project_id)
        FLAG_CACHE_HITS.inc()
        if time.monotonic() - entry.checked_at >= self.ttl and project_id not in self._checking:
            # One request re-validates; concurrent ones keep serving the entry meanwhile.
            self._checking.add(project_id)
            try:
                async with self.db.sessionmaker() as session:
                    version = await FlagRepository(session, project_id).definitions_version()
                if version == entry.version:
                    entry.checked_at = time.monotonic()
                else:
                    self.evict(project_id)
                    entry = await self._load_once(project_id)
            except (OSError, SQLAlchemyError) as error:
                # The database is unreachable: keep serving what we have and try again later.
                log.warning("flag definitions version check failed for project %s: %s", project_id, error)
                entry.checked_at = time.monotonic()
            finally:
                self._checking.discard(project_id)
        return entry

    async def _load_once(self, project_id: int) -> ProjectFlags:
        """Concurrent misses share one load."""
        task = self._loads.get(project_id)
        if task is None:
            task = asyncio.ensure_future(self._load(project_id))
            self._loads[project_id] = task
            task.add_done_callback(lambda _: self._loads.pop(project_id, None))
        return await asyncio.shield(task)

    async def _load(self, project_id: int) -> ProjectFlags:
        evictions = self._evictions.get(project_id, 0)
        async with self.db.sessionmaker() as session:
            repo = FlagRepository(session, project_id)
            # Stamp first: a change committed in between makes the entry look older, never newer.
            version = await repo.definitions_version()
            flags = await repo.live_flags()
            mapping = await GroupTypes(session, project_id).mapping()
            experiments = await repo.experiment_ids_by_flag([flag.id for flag in flags])
            cohorts = await repo.cohort_definitions()
        entry = build_project_flags(
            project_id,
            version,
            [MinimalFeatureFlag.of(flag).model_dump() for flag in flags],
            mapping,
            {flag_id for flag_id, ids in experiments.items() if ids},
            cohorts,
        )
        if self._evictions.get(project_id, 0) == evictions:
            self._entries[project_id] = entry
        return entry


def flag_cache(app: FastAPI) -> FlagCache:
    """The app's cache, created on first use (tests drive the app without its lifespan)."""
    cache = getattr(app.state, "flag_cache", None)
    if cache is None:
        cache = FlagCache(app.state.db, app.state.settings.flag_cache_ttl_seconds)
        app.state.flag_cache = cache
    return cache


@event.listens_for(Session, "after_commit")
def _evict_committed_changes(session: Session) -> None:
    """This process sees its own flag writes at once, without waiting for NOTIFY or the TTL."""
    changed = session.info.pop(CHANGED_PROJECTS, None)
    if changed:
        for cache in list(_live_caches):
            for project_id in changed:
                cache.evict(project_id)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_changes(session: Session) -> None:
    session.info.pop(CHANGED_PROJECTS, None)


async def start_definitions_listener(app: FastAPI):
    """Background task: LISTEN for flag writes of other processes (PostgreSQL only)."""
    db: Database = app.state.db
    cache = flag_cache(app)
    if db.is_sqlite:
        async def nothing_to_stop() -> None:
            return None

        return nothing_to_stop
    task = asyncio.create_task(_listen_forever(db.url, cache))

    async def stop() -> None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return stop


async def _listen_forever(url: str, cache: FlagCache) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def on_notify(_connection, _pid, _channel, payload: str) -> None:
        try:
            cache.evict(int(payload))
        except ValueError:
            cache.evict_all()

    while True:
        connection = None
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(DEFINITIONS_CHANNEL, on_notify)
            # Whatever changed while we were not listening is unknown: start afresh.
            cache.evict_all()
            while not connection.is_closed():
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the TTL check keeps caches coherent meanwhile
            log.warning("flag definitions listener lost its connection: %s", error)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(1)
