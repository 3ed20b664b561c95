"""Capture: authenticate by project API key, read the payload, store events, persons and event
names in the request's transaction."""

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import InvalidProjectAPIKey, NotAuthenticated
from experiments_service.events.parsing import (
    CapturedEvent,
    DroppedEvent,
    decode_body,
    normalise_event,
    raw_events,
    request_sent_at,
    request_token,
)
from experiments_service.events.persons import PersonsBatch
from experiments_service.events.persons_repository import PersonsRepository
from experiments_service.events.repository import EventsRepository
from experiments_service.models import utcnow
from experiments_service.observability import metrics
from experiments_service.observability.middleware import note_project

logger = logging.getLogger(__name__)

MISSING_API_KEY_DETAIL = "API key not provided. You can find your project API key in PostHog project settings."

ProjectResolver = Callable[[str], Awaitable[int | None]]

# Events dropped by this process since it started, by reason (PostHog's capture counts them too).
dropped_events: Counter[str] = Counter()


@dataclass
class RecentEventNames:
    """Event names this process wrote recently, so busy names do not rewrite (and row-lock)
    their definition on every request: `last_seen_at` is refreshed at most every
    `refresh_seconds`."""

    refresh_seconds: float = 60.0
    max_entries: int = 100_000
    _written_at: dict[tuple[int, str], float] = field(default_factory=dict)

    def stale(self, project_id: int, names: Iterable[str]) -> list[str]:
        now = time.monotonic()
        return [
            name for name in names if now - self._written_at.get((project_id, name), -1e18) >= self.refresh_seconds
        ]

    def mark(self, project_id: int, names: Iterable[str]) -> None:
        if len(self._written_at) > self.max_entries:
            self._written_at.clear()
        now = time.monotonic()
        for name in names:
            self._written_at[(project_id, name)] = now


class CaptureService:
    """One capture request: decode, authenticate, validate each event, store in bulk."""

    def __init__(self, session: AsyncSession, recent_names: RecentEventNames, project_for_token: ProjectResolver):
        self.session = session
        self.recent_names = recent_names
        self.project_for_token = project_for_token

    async def capture(
        self,
        body: bytes,
        *,
        content_type: str,
        content_encoding: str,
        query: Mapping[str, str],
        max_bytes: int,
    ) -> int:
        """Store every valid event of the request; returns how many were new."""
        payload = decode_body(
            body, content_type=content_type, content_encoding=content_encoding, query=query, max_bytes=max_bytes
        )
        events = raw_events(payload)
        project_id = await self._authenticate(request_token(payload, query))
        sent_at = request_sent_at(payload, query)
        now = utcnow()
        accepted: list[CapturedEvent] = []
        seen_uuids = set()
        for index, raw in enumerate(events):
            event = normalise_event(raw, now, sent_at)
            if isinstance(event, DroppedEvent):
                dropped_events[event.reason] += 1
                metrics.EVENTS_DROPPED.labels(event.code).inc()
                logger.warning("capture dropped event %d of %d for project %s: %s", index, len(events), project_id, event.reason)
            elif event.uuid not in seen_uuids:
                seen_uuids.add(event.uuid)
                accepted.append(event)
            else:
                metrics.EVENTS_DROPPED.labels("duplicate_in_batch").inc()
        metrics.EVENTS_ACCEPTED.inc(len(accepted))
        stored = await self.store(project_id, accepted, now)
        metrics.EVENTS_STORED.inc(stored)
        return stored

    async def _authenticate(self, token: object) -> int:
        if not token:
            raise NotAuthenticated(MISSING_API_KEY_DETAIL, code="missing_api_key")
        project_id = await self.project_for_token(token) if isinstance(token, str) else None
        if project_id is None:
            raise InvalidProjectAPIKey()
        note_project(project_id)
        return project_id

    async def store(self, project_id: int, events: list[CapturedEvent], now: datetime) -> int:
        """Bulk statements in a fixed table order (events, persons, definitions), so concurrent
        requests lock rows in one order. Persons go before definitions because their locking may
        use a savepoint, whose release must not count as the commit `_record_names` waits for."""
        if not events:
            return 0
        repository = EventsRepository(self.session, project_id)
        stored = await repository.insert_events(events, now)
        new_events = [event for event in events if event.uuid in stored]
        await self._update_persons(repository, [event for event in new_events if event.changes_person], now)
        await self._record_names(repository, {event.event for event in new_events}, now)
        return len(new_events)

    async def _record_names(self, repository: EventsRepository, names: set[str], now: datetime) -> None:
        stale = self.recent_names.stale(repository.project_id, names)
        if stale:
            await repository.record_event_names(stale, now)
            # Remembered only once committed: a rolled-back write must be retried by the next request.
            sqlalchemy_event.listen(
                self.session.sync_session,
                "after_commit",
                lambda _: self.recent_names.mark(repository.project_id, stale),
                once=True,
            )

    async def _update_persons(self, repository: EventsRepository, events: list[CapturedEvent], now: datetime) -> None:
        """Apply `$set`/`$set_once`/`$unset` and merges in batch order to the persons involved,
        loaded and locked first, then write the outcome at once."""
        if not events:
            return
        persons = PersonsRepository(self.session, repository.project_id)
        involved = {event.distinct_id for event in events} | {event.merge_from for event in events if event.merge_from}
        batch = PersonsBatch.of(await persons.load_for_update(involved))
        for event in events:
            batch.apply(event)
        await persons.save(batch, now)
