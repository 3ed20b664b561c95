"""Persons with many distinct ids: `$identify`, `$create_alias` and `$merge_dangerously` as PostHog
merges them, applied in event order and safely across concurrent requests."""

import asyncio
import uuid

from sqlalchemy import select

from experiments_service.models import HashKeyOverride, Person, PersonDistinctId


def _event(name: str, distinct_id: str, **properties) -> dict:
    return {"event": name, "distinct_id": distinct_id, "uuid": str(uuid.uuid4()), "properties": properties}


def identify(distinct_id: str, anon: str, **properties) -> dict:
    return _event("$identify", distinct_id, **{"$anon_distinct_id": anon, **properties})


def alias(distinct_id: str, other: str, dangerously: bool = False) -> dict:
    return _event("$merge_dangerously" if dangerously else "$create_alias", distinct_id, alias=other)


def set_props(distinct_id: str, **properties) -> dict:
    return _event("$set", distinct_id, **{"$set": properties})


async def send(client, kit, *events: dict) -> None:
    response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": list(events)})
    assert response.status_code == 200, response.text


async def persons_of(app, project_id: int) -> dict[frozenset[str], Person]:
    """Every person of the project by its set of distinct ids."""
    async with app.state.db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(PersonDistinctId.distinct_id, PersonDistinctId.person_key, Person)
                .join(Person, Person.id == PersonDistinctId.person_id)
                .where(PersonDistinctId.project_id == project_id)
            )
        ).all()
        persons = (await session.execute(select(Person).where(Person.project_id == project_id))).scalars().all()
    ids: dict[int, set[str]] = {}
    keys: dict[int, set[str]] = {}
    for distinct_id, key, person in rows:
        ids.setdefault(person.id, set()).add(distinct_id)
        keys.setdefault(person.id, set()).add(key)
    assert {person.id for person in persons} == set(ids), "every person has distinct ids"
    assert all(len(found) == 1 and found <= ids[pid] for pid, found in keys.items()), "one key per person, its own id"
    return {frozenset(ids[person.id]): person for person in persons}


class TestIdentify:
    async def test_anonymous_and_identified_ids_become_one_person(self, client, kit, app):
        await send(client, kit, set_props("anon-1", seen="landing"))
        await send(client, kit, identify("user-1", "anon-1", **{"$set": {"email": "u@x.io"}}))
        persons = await persons_of(app, kit.project_id)
        person = persons[frozenset({"anon-1", "user-1"})]
        assert person.properties == {"seen": "landing", "email": "u@x.io"}
        assert person.is_identified is True
        assert len(persons) == 1

    async def test_neither_id_known_creates_one_identified_person(self, client, kit, app):
        await send(client, kit, identify("user-2", "anon-2", **{"$set_once": {"first": 1}}))
        [(ids, person)] = (await persons_of(app, kit.project_id)).items()
        assert ids == {"user-2", "anon-2"}
        assert person.properties == {"first": 1} and person.is_identified

    async def test_only_the_identified_id_known_gains_the_anonymous_one(self, client, kit, app):
        await send(client, kit, set_props("user-3", plan="pro"))
        await send(client, kit, identify("user-3", "anon-3"))
        [(ids, person)] = (await persons_of(app, kit.project_id)).items()
        assert ids == {"user-3", "anon-3"} and person.properties == {"plan": "pro"} and person.is_identified

    async def test_two_persons_merge_and_the_identified_side_wins_conflicts(self, client, kit, app):
        await send(client, kit, set_props("anon-4", plan="free", source="ad"), set_props("user-4", plan="pro"))
        await send(client, kit, identify("user-4", "anon-4", **{"$set_once": {"source": "ignored", "extra": 1}}))
        persons = await persons_of(app, kit.project_id)
        assert list(persons) == [frozenset({"anon-4", "user-4"})]
        assert persons[frozenset({"anon-4", "user-4"})].properties == {"plan": "pro", "source": "ad", "extra": 1}

    async def test_an_identified_person_is_not_merged_away(self, client, kit, app):
        await send(client, kit, identify("user-5", "anon-5"))
        await send(client, kit, set_props("user-6", plan="pro"))
        # anon-5 already belongs to an identified person: PostHog refuses the merge.
        await send(client, kit, identify("user-6", "anon-5", **{"$set": {"tried": True}}))
        persons = await persons_of(app, kit.project_id)
        assert set(persons) == {frozenset({"user-5", "anon-5"}), frozenset({"user-6"})}
        assert persons[frozenset({"user-6"})].properties == {"plan": "pro", "tried": True}
        assert persons[frozenset({"user-6"})].is_identified is True

    async def test_merge_dangerously_merges_identified_persons(self, client, kit, app):
        await send(client, kit, identify("user-7", "anon-7"), identify("user-8", "anon-8"))
        await send(client, kit, alias("user-8", "user-7", dangerously=True))
        assert set(await persons_of(app, kit.project_id)) == {frozenset({"user-7", "anon-7", "user-8", "anon-8"})}

    async def test_illegal_and_identical_ids_merge_nothing(self, client, kit, app):
        await send(client, kit, identify("user-9", "anonymous"), identify("user-9", "user-9"), alias("null", "x-9"))
        persons = await persons_of(app, kit.project_id)
        assert set(persons) == {frozenset({"user-9"}), frozenset({"null"})}
        assert not persons[frozenset({"user-9"})].is_identified

    async def test_identify_without_an_anonymous_id_is_an_ordinary_event(self, client, kit, app):
        await send(client, kit, _event("$identify", "user-10", **{"$set": {"a": 1}}))
        assert set(await persons_of(app, kit.project_id)) == {frozenset({"user-10"})}


class TestAlias:
    async def test_create_alias_joins_two_persons(self, client, kit, app):
        await send(client, kit, set_props("a-1", x=1), set_props("b-1", y=2))
        await send(client, kit, alias("b-1", "a-1"))
        persons = await persons_of(app, kit.project_id)
        assert persons[frozenset({"a-1", "b-1"})].properties == {"x": 1, "y": 2}

    async def test_merges_in_one_batch_apply_in_event_order(self, client, kit, app):
        await send(
            client, kit,
            set_props("c-1", step=1),
            identify("c-2", "c-1"),
            set_props("c-1", step=2),
            alias("c-3", "c-2"),
            set_props("c-3", last=True),
        )
        persons = await persons_of(app, kit.project_id)
        assert persons[frozenset({"c-1", "c-2", "c-3"})].properties == {"step": 2, "last": True}
        assert len(persons) == 1

    async def test_a_merged_person_keeps_all_its_distinct_ids(self, client, kit, app):
        await send(client, kit, identify("d-2", "d-1"))
        await send(client, kit, set_props("d-3", z=1), alias("d-3", "d-9"))
        await send(client, kit, alias("d-3", "d-1", dangerously=True))
        assert set(await persons_of(app, kit.project_id)) == {frozenset({"d-1", "d-2", "d-3", "d-9"})}

    async def test_redelivered_merge_changes_nothing(self, client, kit, app):
        first = identify("e-2", "e-1", **{"$set": {"v": 1}})
        await send(client, kit, first)
        await send(client, kit, set_props("e-2", v=2))
        await send(client, kit, first)
        persons = await persons_of(app, kit.project_id)
        assert persons[frozenset({"e-1", "e-2"})].properties == {"v": 2}

    async def test_hash_key_overrides_of_the_merged_away_person_yield(self, client, kit, app):
        async with app.state.db.transaction() as session:
            session.add_all(
                [
                    HashKeyOverride(project_id=kit.project_id, distinct_id="f-1", feature_flag_key="both", hash_key="from-f1"),
                    HashKeyOverride(project_id=kit.project_id, distinct_id="f-1", feature_flag_key="only-f1", hash_key="f1"),
                    HashKeyOverride(project_id=kit.project_id, distinct_id="f-2", feature_flag_key="both", hash_key="from-f2"),
                ]
            )
        await send(client, kit, set_props("f-1", a=1), set_props("f-2", b=1))
        await send(client, kit, identify("f-2", "f-1"))
        async with app.state.db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(HashKeyOverride.feature_flag_key, HashKeyOverride.hash_key).where(
                        HashKeyOverride.project_id == kit.project_id
                    )
                )
            ).all()
        assert sorted(rows) == [("both", "from-f2"), ("only-f1", "f1")]


class TestConcurrentMerges:
    async def test_concurrent_requests_merging_overlapping_ids_make_one_person(self, client, kit, app):
        """A chain of ids merged by many requests at once ends as one person holding every id."""
        ids = [f"g-{index}" for index in range(10)]
        await send(client, kit, *(set_props(distinct_id, **{distinct_id: 1}) for distinct_id in ids))
        requests = [send(client, kit, alias(ids[index + 1], ids[index], dangerously=True), set_props(ids[index], touched=index)) for index in range(9)]
        await asyncio.gather(*requests)
        persons = await persons_of(app, kit.project_id)
        assert list(persons) == [frozenset(ids)]
        properties = persons[frozenset(ids)].properties
        assert {key for key in properties if key.startswith("g-")} == set(ids)
