"""SQL for captured events and event definitions: bulk statements, one per table."""

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.db import insert_on_conflict
from experiments_service.events.parsing import CapturedEvent
from experiments_service.models import Event, EventDefinition


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
