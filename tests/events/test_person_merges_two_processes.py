"""Two real server processes merging overlapping distinct ids at once (PostgreSQL): no distinct id
is lost and no id ends with two persons."""

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from experiments_service.models import Person, PersonDistinctId
from tests.flags.live_server import running_server


def _merge(distinct_id: str, other: str) -> dict:
    return {"event": "$merge_dangerously", "distinct_id": distinct_id, "uuid": str(uuid.uuid4()),
            "properties": {"alias": other, "$set": {f"seen_{distinct_id}": True}}}  # fmt: skip


async def test_concurrent_merges_through_two_processes_make_one_person_per_chain(kit, app, db_name, database_urls):
    if db_name != "postgresql":
        pytest.skip("two processes share PostgreSQL; SQLite serves one process")
    chains = [[f"chain-{chain}-{link}" for link in range(8)] for chain in range(6)]
    with running_server(database_urls["postgresql"]) as a, running_server(database_urls["postgresql"]) as b:
        async with httpx.AsyncClient(timeout=30) as http:

            async def send(base: str, events: list[dict]) -> None:
                response = await http.post(f"{base}/batch/", json={"api_key": kit.project_api_key, "batch": events})
                assert response.status_code == 200, response.text

            # Each link merges two neighbours of a chain; neighbouring links share an id and go to
            # different processes, several batches at once, so merges of one person race.
            requests = [
                send((a.url, b.url)[link % 2], [_merge(chain[link + 1], chain[link]), _merge(chain[link], chain[link + 1])])
                for link in range(7)
                for chain in chains
            ]
            await asyncio.gather(*requests)

    async with app.state.db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(PersonDistinctId.distinct_id, PersonDistinctId.person_id).where(
                    PersonDistinctId.project_id == kit.project_id
                )
            )
        ).all()
        persons = await session.scalar(select(func.count()).select_from(Person).where(Person.project_id == kit.project_id))
    owner = dict(rows)
    assert len(rows) == len(owner) == sum(len(chain) for chain in chains), "every id stored once"
    assert [len({owner[distinct_id] for distinct_id in chain}) for chain in chains] == [1] * len(chains)
    assert persons == len(chains), "no person left without ids"
