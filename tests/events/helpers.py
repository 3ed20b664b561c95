"""Factories and database probes for the capture tests."""

import random
import uuid as uuid_module
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from experiments_service.events.parsing import CapturedEvent
from experiments_service.models import Event, EventDefinition, Person


def event(name: str = "$pageview", distinct_id: str = "user-1", **fields: Any) -> dict[str, Any]:
    """One raw capture event as an SDK would send it."""
    return {"event": name, "distinct_id": distinct_id, "uuid": str(uuid_module.uuid4()), **fields}


async def stored_events(app, project_id: int) -> list[Event]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.execute(select(Event).where(Event.project_id == project_id).order_by(Event.id))
        return list(rows.scalars())


async def stored_person(app, project_id: int, distinct_id: str) -> Person | None:
    async with app.state.db.sessionmaker() as session:
        return (
            await session.execute(
                select(Person).where(Person.project_id == project_id, Person.distinct_id == distinct_id)
            )
        ).scalar_one_or_none()


async def stored_definitions(app, project_id: int) -> dict[str, EventDefinition]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.execute(select(EventDefinition).where(EventDefinition.project_id == project_id))
        return {definition.name: definition for definition in rows.scalars()}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# --- random runs of person updates -------------------------------------------------------

KEYS = ["a", "b", "c", "d"]


def sequentially(stored: dict, events: list[CapturedEvent]) -> dict:
    """The plain reading of PostHog's rules, one event at a time."""
    result = dict(stored)
    for item in events:
        for key, value in (item.person_set_once or {}).items():
            result.setdefault(key, value)
        result.update(item.person_set or {})
        for key in item.person_unset:
            result.pop(key, None)
    return result


def random_event(rng: random.Random) -> CapturedEvent:
    def some_keys() -> dict:
        return {key: rng.randrange(100) for key in rng.sample(KEYS, rng.randrange(3))}

    return CapturedEvent(
        uuid=uuid_module.uuid4(), event="$set", distinct_id="p", timestamp=datetime.now(UTC), properties={},
        flag_key=None, flag_response=None,
        person_set=some_keys() or None, person_set_once=some_keys() or None,
        person_unset=rng.sample(KEYS, rng.randrange(2)),
    )


def random_case(seed: int) -> tuple[dict, list[CapturedEvent]]:
    rng = random.Random(seed)
    stored = {key: f"stored-{key}" for key in rng.sample(KEYS, rng.randrange(len(KEYS) + 1))}
    return stored, [random_event(rng) for _ in range(rng.randrange(1, 6))]
