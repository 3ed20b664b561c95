"""SQL for captured events, persons and event definitions: bulk statements, one per table."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.db import insert_on_conflict
from experiments_service.events.parsing import CapturedEvent, PersonChange
from experiments_service.models import Event, EventDefinition, Person


_INSERT_EVENTS_FROM_ARRAYS = text(
    """
    INSERT INTO events (project_id, uuid, event, distinct_id, "timestamp", properties, flag_key, flag_response, created_at)
    SELECT :project_id, uuid, event, distinct_id, "timestamp", properties::json, flag_key, flag_response, :created_at
    FROM unnest(
        CAST(:uuids AS uuid[]), CAST(:names AS text[]), CAST(:distinct_ids AS text[]),
        CAST(:timestamps AS timestamptz[]), CAST(:properties AS text[]), CAST(:flag_keys AS text[]),
        CAST(:flag_responses AS text[])
    ) WITH ORDINALITY AS batch (uuid, event, distinct_id, "timestamp", properties, flag_key, flag_response, position)
    ORDER BY position
    ON CONFLICT (project_id, uuid) DO NOTHING
    RETURNING uuid
    """
)


# New persons get `initial`; existing ones keep their values only for keys not replaced (see
# `PersonChange`). jsonb's `||` lets its right side win, and `-` drops the replaced keys.
_UPSERT_PERSONS_FROM_ARRAYS = text(
    """
    WITH change AS (
        SELECT distinct_id, initial, replaced
        FROM unnest(CAST(:distinct_ids AS text[]), CAST(:initials AS text[]), CAST(:replaced AS text[]))
            AS change (distinct_id, initial, replaced)
    )
    INSERT INTO persons (project_id, distinct_id, properties, created_at, updated_at)
    SELECT :project_id, distinct_id, CAST(initial AS json), :now, :now FROM change ORDER BY distinct_id
    ON CONFLICT (project_id, distinct_id) DO UPDATE SET
        properties = CAST(
            CAST(excluded.properties AS jsonb) || (
                COALESCE(CAST(persons.properties AS jsonb), '{}'::jsonb) - ARRAY(
                    SELECT jsonb_array_elements_text(CAST(change.replaced AS jsonb))
                    FROM change WHERE change.distinct_id = excluded.distinct_id
                )
            ) AS json
        ),
        updated_at = excluded.updated_at
    """
)


class EventsRepository:
    """Every statement is scoped to one project; rows are written in sorted key order so
    concurrent requests lock shared rows in the same order and cannot deadlock."""

    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    def _insert(self, model):
        return insert_on_conflict(self.session, model.__table__)

    async def insert_events(self, events: list[CapturedEvent], created_at: datetime) -> set[UUID]:
        """Insert all events in one statement; a (project, uuid) already stored is skipped.

        Returns the uuids actually inserted, so re-delivered events change nothing else.
        """
        if not events:
            return set()
        if self.session.get_bind().dialect.name == "postgresql":
            return await self._insert_events_postgresql(events, created_at)
        statement = (
            self._insert(Event)
            .on_conflict_do_nothing(index_elements=["project_id", "uuid"])
            .returning(Event.__table__.c.uuid)
        )
        rows = [
            {
                "project_id": self.project_id,
                "uuid": event.uuid,
                "event": event.event,
                "distinct_id": event.distinct_id,
                "timestamp": event.timestamp,
                "properties": event.properties,
                "flag_key": event.flag_key,
                "flag_response": event.flag_response,
                "created_at": created_at,
            }
            for event in events
        ]
        result = await self.session.execute(statement, rows)
        return set(result.scalars())

    async def _insert_events_postgresql(self, events: list[CapturedEvent], created_at: datetime) -> set[UUID]:
        """The capture hot path on PostgreSQL: one array per column through `unnest`, so the
        driver encodes nine parameters instead of nine per event."""
        result = await self.session.execute(
            _INSERT_EVENTS_FROM_ARRAYS,
            {
                "project_id": self.project_id,
                "created_at": created_at,
                "uuids": [event.uuid for event in events],
                "names": [event.event for event in events],
                "distinct_ids": [event.distinct_id for event in events],
                "timestamps": [event.timestamp for event in events],
                "properties": [orjson.dumps(event.properties).decode() for event in events],
                "flag_keys": [event.flag_key for event in events],
                "flag_responses": [event.flag_response for event in events],
            },
        )
        return set(result.scalars())

    async def record_event_names(self, names: Iterable[str], seen_at: datetime) -> None:
        """Create missing definitions and move `last_seen_at` of existing ones."""
        rows = [
            {"project_id": self.project_id, "name": name, "created_at": seen_at, "last_seen_at": seen_at}
            for name in sorted(set(names))
        ]
        if not rows:
            return
        statement = self._insert(EventDefinition)
        statement = statement.on_conflict_do_update(
            index_elements=["project_id", "name"], set_={"last_seen_at": statement.excluded.last_seen_at}
        )
        await self.session.execute(statement, rows)

    async def upsert_persons(self, changes: dict[str, PersonChange], now: datetime) -> None:
        """Create or update the persons of a batch, in distinct-id order."""
        if not changes:
            return
        if self.session.get_bind().dialect.name == "postgresql":
            ordered = sorted(changes)
            await self.session.execute(
                _UPSERT_PERSONS_FROM_ARRAYS,
                {
                    "project_id": self.project_id,
                    "now": now,
                    "distinct_ids": ordered,
                    "initials": [orjson.dumps(changes[key].initial).decode() for key in ordered],
                    "replaced": [orjson.dumps(sorted(changes[key].replaced)).decode() for key in ordered],
                },
            )
            return
        created = await self._insert_new_persons({key: change.initial for key, change in changes.items()}, now)
        updates = []
        for person_id, distinct_id, stored in await self._persons_for_update(set(changes) - created):
            merged = changes[distinct_id].applied_to(stored)
            if merged != stored:
                updates.append({"id": person_id, "properties": merged, "updated_at": now})
        if updates:
            await self.session.execute(update(Person), updates)

    async def _insert_new_persons(self, properties_by_id: dict[str, dict[str, Any]], now: datetime) -> set[str]:
        """Insert persons not stored yet; returns the distinct ids that were new."""
        rows = [
            {
                "project_id": self.project_id,
                "distinct_id": distinct_id,
                "properties": properties_by_id[distinct_id],
                "created_at": now,
                "updated_at": now,
            }
            for distinct_id in sorted(properties_by_id)
        ]
        statement = (
            self._insert(Person)
            .on_conflict_do_nothing(index_elements=["project_id", "distinct_id"])
            .returning(Person.__table__.c.distinct_id)
        )
        return set((await self.session.execute(statement, rows)).scalars())

    async def _persons_for_update(self, distinct_ids: Iterable[str]) -> list[tuple[int, str, dict[str, Any]]]:
        """Existing persons as (id, distinct_id, properties), locked in distinct-id order."""
        ids = sorted(set(distinct_ids))
        if not ids:
            return []
        rows = await self.session.execute(
            select(Person.id, Person.distinct_id, Person.properties)
            .where(Person.project_id == self.project_id, Person.distinct_id.in_(ids))
            .order_by(Person.distinct_id)
            .with_for_update()
        )
        return [(row.id, row.distinct_id, row.properties or {}) for row in rows]
