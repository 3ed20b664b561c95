"""SQL for persons and their distinct ids: load and lock what a capture batch touches, then
write what `events.persons` decided.

Concurrency (PostgreSQL): a batch first takes a transaction advisory lock per distinct id it
names (sorted, so two batches cannot deadlock on them), which keeps two batches from creating two
persons for one new id; then it row-locks the persons those ids belong to and checks the ids still
belong to them (a merge committed meanwhile may have moved them: the locks are then released to a
savepoint and taken again). Merges thus serialise on the persons they touch and never lose an id.
SQLite has one writer at a time, which the capture transaction already is.
"""

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.db import insert_on_conflict
from experiments_service.events.persons import PersonsBatch, PersonState
from experiments_service.models import HashKeyOverride, Person, PersonDistinctId

_LOCK_DISTINCT_IDS = text("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS bigint[])) AS key")
MAX_LOCK_ATTEMPTS = 20


def _lock_key(project_id: int, distinct_id: str) -> int:
    digest = hashlib.blake2b(f"{project_id}:{distinct_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PersonsRepository:
    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id
        self._stored: dict[str, tuple[int, str]] = {}

    @property
    def _postgresql(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def _owners(self, distinct_ids: list[str]) -> dict[str, int]:
        query = select(PersonDistinctId.distinct_id, PersonDistinctId.person_id).where(
            PersonDistinctId.project_id == self.project_id, PersonDistinctId.distinct_id.in_(distinct_ids)
        )
        return dict((await self.session.execute(query)).all())

    async def _lock_persons(self, person_ids: set[int]) -> list[Person]:
        if not person_ids:
            return []
        query = (
            select(Person)
            .where(Person.project_id == self.project_id, Person.id.in_(sorted(person_ids)))
            .order_by(Person.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(query)).scalars())

    async def load_for_update(self, distinct_ids: Iterable[str]) -> list[PersonState]:
        """The persons these distinct ids belong to, locked, with all their distinct ids."""
        ids = sorted(set(distinct_ids))
        if not ids:
            return []
        if self._postgresql:
            keys = sorted({_lock_key(self.project_id, distinct_id) for distinct_id in ids})
            await self.session.execute(_LOCK_DISTINCT_IDS, {"keys": keys})
        for _ in range(MAX_LOCK_ATTEMPTS):
            owners = await self._owners(ids)
            # No id has a person yet: the advisory locks keep it so, nothing to row-lock.
            if not self._postgresql or not owners:
                persons = await self._lock_persons(set(owners.values()))
                break
            savepoint = await self.session.begin_nested()
            persons = await self._lock_persons(set(owners.values()))
            if len(persons) == len(set(owners.values())) and await self._owners(ids) == owners:
                await savepoint.commit()
                break
            await savepoint.rollback()
        else:
            raise RuntimeError("persons kept moving under concurrent merges")
        return await self._states(persons)

    async def _states(self, persons: list[Person]) -> list[PersonState]:
        if not persons:
            return []
        query = select(PersonDistinctId.distinct_id, PersonDistinctId.person_id, PersonDistinctId.person_key).where(
            PersonDistinctId.person_id.in_([person.id for person in persons])
        )
        ids_of: dict[int, set[str]] = {}
        keys: dict[int, str] = {}
        for distinct_id, person_id, person_key in (await self.session.execute(query)):
            ids_of.setdefault(person_id, set()).add(distinct_id)
            keys[person_id] = person_key
            self._stored[distinct_id] = (person_id, person_key)
        return [
            PersonState(
                person.id, keys[person.id], dict(person.properties or {}), person.is_identified, person.created_at,
                ids_of[person.id],
            )
            for person in persons
            if person.id in keys
        ]

    async def save(self, batch: PersonsBatch, now: datetime) -> None:
        """Write the batch's outcome: new persons, moved and added distinct ids, merged persons
        deleted, changed properties; hash-key overrides of a merged person yield to its target's."""
        remaining = batch.persons()
        created = [person for person in remaining if person.id is None]
        if created:
            rows = [
                {
                    "project_id": self.project_id, "properties": person.properties, "is_identified": person.is_identified,
                    "created_at": person.created_at, "updated_at": now,
                }
                for person in created
            ]
            statement = Person.__table__.insert().returning(Person.__table__.c.id, sort_by_parameter_order=True)
            for person, person_id in zip(created, (await self.session.execute(statement, rows)).scalars(), strict=True):
                person.id = person_id
        for merge in batch.merges:
            await self._drop_overridden_hash_keys(merge.source_ids, merge.target_ids)
        await self._point_distinct_ids(remaining)
        gone = sorted({merge.source.id for merge in batch.merges if merge.source.id is not None} - {p.id for p in remaining})
        if gone:
            await self.session.execute(delete(Person).where(Person.project_id == self.project_id, Person.id.in_(gone)))
        changed = [
            {
                "person_id": person.id, "properties": person.properties, "is_identified": person.is_identified,
                "created_at": person.created_at, "updated_at": now,
            }
            for person in remaining
            if person.changed and person not in created
        ]
        if changed:
            table = Person.__table__
            await self.session.execute(
                update(table)
                .where(table.c.id == bindparam("person_id"))
                .values(
                    properties=bindparam("properties"), is_identified=bindparam("is_identified"),
                    created_at=bindparam("created_at"), updated_at=bindparam("updated_at"),
                ),
                changed,
            )

    async def _point_distinct_ids(self, persons: list[PersonState]) -> None:
        """Insert or move the distinct-id rows whose person (or person key) the batch changed."""
        rows = [
            {"project_id": self.project_id, "distinct_id": distinct_id, "person_id": person.id, "person_key": person.key}
            for person in persons
            for distinct_id in sorted(person.distinct_ids)
            if self._stored.get(distinct_id) != (person.id, person.key)
        ]
        if not rows:
            return
        statement = insert_on_conflict(self.session, PersonDistinctId.__table__)
        statement = statement.on_conflict_do_update(
            index_elements=["project_id", "distinct_id"],
            set_={"person_id": statement.excluded.person_id, "person_key": statement.excluded.person_key},
        )
        await self.session.execute(statement, rows)

    async def _drop_overridden_hash_keys(self, source_ids: frozenset[str], target_ids: frozenset[str]) -> None:
        """A merged person keeps the target's experience-continuity identifier for a flag both had."""
        overrides = HashKeyOverride.__table__
        target_flags = select(overrides.c.feature_flag_key).where(
            overrides.c.project_id == self.project_id, overrides.c.distinct_id.in_(sorted(target_ids))
        )
        await self.session.execute(
            delete(overrides).where(
                overrides.c.project_id == self.project_id,
                overrides.c.distinct_id.in_(sorted(source_ids)),
                overrides.c.feature_flag_key.in_(target_flags),
            )
        )
