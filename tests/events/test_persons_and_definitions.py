"""Persons follow `$set`/`$set_once`/`$unset`; event definitions record every name seen."""

import asyncio

import httpx

from tests.factories import make_kit
from tests.events.helpers import event, random_case, sequentially, stored_definitions, stored_events, stored_person


class TestPersonProperties:
    async def test_first_set_creates_the_person(self, capture, kit, app):
        response = await capture({"batch": [event("a", "alice", properties={"$set": {"email": "a@x.io", "plan": "free"}})]})
        assert response.status_code == 200
        person = await stored_person(app, kit.project_id, "alice")
        assert person.properties == {"email": "a@x.io", "plan": "free"}

    async def test_set_overwrites_and_set_once_only_fills_missing(self, capture, kit, app):
        first = event("a", "bob", properties={"$set": {"plan": "free"}, "$set_once": {"initial_referrer": "google"}})
        assert (await capture({"batch": [first]})).status_code == 200
        second = event(
            "b", "bob",
            properties={"$set": {"plan": "pro"}, "$set_once": {"initial_referrer": "bing", "first_seen": "2026-01-01"}},
        )
        assert (await capture({"batch": [second]})).status_code == 200
        person = await stored_person(app, kit.project_id, "bob")
        assert person.properties == {"plan": "pro", "initial_referrer": "google", "first_seen": "2026-01-01"}

    async def test_changes_in_one_batch_apply_in_order(self, capture, kit, app):
        batch = [
            event("a", "carol", properties={"$set": {"step": 1}}),
            event("b", "carol", properties={"$set_once": {"step": 99, "origin": "ad"}}),
            event("c", "carol", properties={"$set": {"step": 3}}),
            event("d", "dave", properties={"$set": {"step": 1}}),
        ]
        assert (await capture({"batch": batch})).status_code == 200
        assert (await stored_person(app, kit.project_id, "carol")).properties == {"step": 3, "origin": "ad"}
        assert (await stored_person(app, kit.project_id, "dave")).properties == {"step": 1}

    async def test_identify_with_top_level_set(self, capture, kit, app):
        identify = {
            "event": "$identify",
            "distinct_id": "erin",
            "$set": {"name": "Erin"},
            "$set_once": {"signup": "2026-01-01"},
            "properties": {"$set": {"name": "overridden", "city": "Oslo"}},
        }
        assert (await capture({"batch": [identify]})).status_code == 200
        person = await stored_person(app, kit.project_id, "erin")
        assert person.properties == {"name": "Erin", "city": "Oslo", "signup": "2026-01-01"}
        [row] = await stored_events(app, kit.project_id)
        assert row.properties["$set"] == {"name": "Erin", "city": "Oslo"}
        assert row.properties["$set_once"] == {"signup": "2026-01-01"}

    async def test_unset_removes_keys(self, capture, kit, app):
        assert (await capture({"batch": [event("a", "frank", properties={"$set": {"a": 1, "b": 2}})]})).status_code == 200
        assert (await capture({"batch": [event("b", "frank", properties={"$unset": ["a"]})]})).status_code == 200
        assert (await stored_person(app, kit.project_id, "frank")).properties == {"b": 2}

    async def test_a_batch_folds_set_once_set_and_unset_onto_stored_properties(self, capture, kit, app):
        stored = event("a", "kim", properties={"$set": {"a": 1, "b": 2, "c": 3, "d": 4}})
        assert (await capture({"batch": [stored]})).status_code == 200
        batch = [
            event("b", "kim", properties={"$set_once": {"a": 9, "e": 5}}),
            event("c", "kim", properties={"$unset": ["b"]}),
            event("d", "kim", properties={"$set_once": {"b": 7}, "$set": {"c": 30}}),
            event("e", "kim", properties={"$unset": ["c", "missing"], "$set_once": {"e": 6}}),
        ]
        assert (await capture({"batch": batch})).status_code == 200
        person = await stored_person(app, kit.project_id, "kim")
        assert person.properties == {"a": 1, "b": 7, "d": 4, "e": 5}
        assert person.updated_at > person.created_at

    async def test_random_batches_follow_the_one_by_one_rules(self, capture, kit, app):
        """The database merge (one SQL statement on PostgreSQL) equals applying events in order."""
        for seed in range(12):
            stored, changes = random_case(seed)
            distinct_id = f"random-{seed}"
            first = [event("seed", distinct_id, properties={"$set": stored})] if stored else []
            batch = [
                event(
                    "change", distinct_id,
                    properties={"$set": item.person_set, "$set_once": item.person_set_once, "$unset": item.person_unset},
                )
                for item in changes
            ]
            assert (await capture({"batch": first})).status_code == 200
            assert (await capture({"batch": batch})).status_code == 200
            person = await stored_person(app, kit.project_id, distinct_id)
            expected = sequentially(stored, changes)
            assert (person.properties if person else {}) == expected, f"seed {seed}"

    async def test_nul_characters_are_removed_from_person_properties_only(self, capture, kit, app):
        sent = event("a", "leo", properties={"$set": {"na\x00me": "Le\x00o", "tags": ["x\x00"]}})
        assert (await capture({"batch": [sent]})).status_code == 200
        assert (await stored_person(app, kit.project_id, "leo")).properties == {"name": "Leo", "tags": ["x"]}
        [row] = await stored_events(app, kit.project_id)
        assert row.properties["$set"] == {"na\x00me": "Le\x00o", "tags": ["x\x00"]}
        again = event("b", "leo", properties={"$set": {"name": "Leo\x00n"}, "$unset": ["ta\x00gs"]})
        assert (await capture({"batch": [again]})).status_code == 200
        assert (await stored_person(app, kit.project_id, "leo")).properties == {"name": "Leon"}

    async def test_events_without_person_changes_create_no_person(self, capture, kit, app):
        assert (await capture({"batch": [event("a", "ghost", properties={"$set": "not an object"})]})).status_code == 200
        assert await stored_person(app, kit.project_id, "ghost") is None
        assert len(await stored_events(app, kit.project_id)) == 1

    async def test_personless_events_leave_persons_alone(self, capture, kit, app):
        assert (await capture({"batch": [event("a", "nina", properties={"$set": {"plan": "free"}})]})).status_code == 200
        personless = event("b", "nina", properties={"$process_person_profile": False, "$set": {"plan": "pro"}})
        assert (await capture({"batch": [personless, event("c", "olga", properties={"$process_person_profile": False, "$set": {"x": 1}})]})).status_code == 200
        assert (await stored_person(app, kit.project_id, "nina")).properties == {"plan": "free"}
        assert await stored_person(app, kit.project_id, "olga") is None
        assert len(await stored_events(app, kit.project_id)) == 3

    async def test_redelivered_event_does_not_reapply_its_changes(self, capture, kit, app):
        old = event("a", "heidi", properties={"$set": {"plan": "free"}})
        assert (await capture({"batch": [old]})).status_code == 200
        assert (await capture({"batch": [event("b", "heidi", properties={"$set": {"plan": "pro"}})]})).status_code == 200
        assert (await capture({"batch": [old]})).status_code == 200
        assert (await stored_person(app, kit.project_id, "heidi")).properties == {"plan": "pro"}
        assert len(await stored_events(app, kit.project_id)) == 2

    async def test_persons_are_per_project(self, client, capture, kit, app):
        other = await make_kit(app, client)
        assert (await capture({"batch": [event("a", "ivan", properties={"$set": {"p": "mine"}})]})).status_code == 200
        response = await client.post(
            "/batch/",
            json={"api_key": other.project_api_key, "batch": [event("a", "ivan", properties={"$set": {"p": "theirs"}})]},
        )
        assert response.status_code == 200
        assert (await stored_person(app, kit.project_id, "ivan")).properties == {"p": "mine"}
        assert (await stored_person(app, other.project_id, "ivan")).properties == {"p": "theirs"}

    async def test_concurrent_requests_merge_into_one_person(self, capture, kit, app):
        requests = [
            capture({"batch": [event("a", "judy", properties={"$set": {f"k{index}": index}})]}) for index in range(8)
        ]
        responses = await asyncio.gather(*requests)
        assert [response.status_code for response in responses] == [200] * 8
        person = await stored_person(app, kit.project_id, "judy")
        assert person.properties == {f"k{index}": index for index in range(8)}


class TestEventDefinitions:
    async def test_names_are_recorded_once_per_project(self, capture, kit, app):
        batch = [event("$pageview"), event("$pageview"), event("signed_up")]
        assert (await capture({"batch": batch})).status_code == 200
        definitions = await stored_definitions(app, kit.project_id)
        assert set(definitions) == {"$pageview", "signed_up"}
        [first_event, *_] = await stored_events(app, kit.project_id)
        for definition in definitions.values():
            assert definition.last_seen_at == definition.created_at == first_event.created_at

    async def test_last_seen_at_moves_when_the_name_is_seen_again(self, capture, kit, app, monkeypatch):
        assert (await capture({"batch": [event("$pageview")]})).status_code == 200
        first = (await stored_definitions(app, kit.project_id))["$pageview"]
        monkeypatch.setattr(app.state.recent_event_names, "refresh_seconds", 0.0)
        await asyncio.sleep(0.01)
        assert (await capture({"batch": [event("$pageview")]})).status_code == 200
        second = (await stored_definitions(app, kit.project_id))["$pageview"]
        assert second.id == first.id
        assert second.created_at == first.created_at
        assert second.last_seen_at > first.last_seen_at

    async def test_recently_written_names_are_not_rewritten(self, capture, kit, app):
        assert (await capture({"batch": [event("$pageview")]})).status_code == 200
        first = (await stored_definitions(app, kit.project_id))["$pageview"]
        assert (await capture({"batch": [event("$pageview"), event("new_name")]})).status_code == 200
        definitions = await stored_definitions(app, kit.project_id)
        assert definitions["$pageview"].last_seen_at == first.last_seen_at
        assert set(definitions) == {"$pageview", "new_name"}

    async def test_dropped_events_define_no_names(self, capture, kit, app):
        assert (await capture({"batch": [{"event": "orphan"}, event("kept")]})).status_code == 200
        assert set(await stored_definitions(app, kit.project_id)) == {"kept"}


class TestAtomicity:
    async def test_a_failing_request_writes_nothing_and_forgets_nothing(self, app, kit, monkeypatch):
        from experiments_service.events.repository import EventsRepository

        async def broken_upsert(self, changes, now):
            raise RuntimeError("database went away")

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            with monkeypatch.context() as patch:
                patch.setattr(EventsRepository, "upsert_persons", broken_upsert)
                body = {"api_key": kit.project_api_key, "batch": [event("fresh_name", "mia", properties={"$set": {"a": 1}})]}
                response = await client.post("/batch/", json=body)
            assert response.status_code == 500
            assert response.json()["type"] == "server_error"
            assert await stored_events(app, kit.project_id) == []
            assert await stored_definitions(app, kit.project_id) == {}
            assert await stored_person(app, kit.project_id, "mia") is None

            retry = {"api_key": kit.project_api_key, "batch": [event("fresh_name", "mia", properties={"$set": {"a": 2}})]}
            assert (await client.post("/batch/", json=retry)).status_code == 200
        assert set(await stored_definitions(app, kit.project_id)) == {"fresh_name"}
        assert (await stored_person(app, kit.project_id, "mia")).properties == {"a": 2}
