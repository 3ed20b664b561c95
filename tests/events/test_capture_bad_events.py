"""One bad event is dropped, logged with its reason and counted; the rest of its batch is stored."""

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from experiments_service.events.service import dropped_events
from experiments_service.models import Event


def good(index: int) -> dict:
    return {"event": "$pageview", "distinct_id": f"user-{index}", "uuid": str(uuid.uuid4())}


def flag_call(flag: str, response: str) -> dict:
    return {
        "event": "$feature_flag_called", "distinct_id": "u", "uuid": str(uuid.uuid4()),
        "properties": {"$feature_flag": flag, "$feature_flag_response": response},
    }


def deep(depth: int) -> str:
    """As JSON text: the standard encoder cannot write it."""
    properties = '{"x": ' * depth + '"leaf"' + "}" * depth
    return '{"event": "deep", "distinct_id": "u", "properties": %s}' % properties


async def stored(app, project_id: int) -> list[Event]:
    async with app.state.db.sessionmaker() as session:
        return list((await session.execute(select(Event).where(Event.project_id == project_id))).scalars())


BAD_EVENTS = {
    "nul-in-flag": (flag_call("my-\x00flag", "test"), "$feature_flag"),
    "nul-in-response": (flag_call("my-flag", "te\x00st"), "$feature_flag_response"),
    "depth-256": (deep(256), "cannot be stored as JSON"),
    "depth-300": (deep(300), "cannot be stored as JSON"),
    "depth-990": (deep(990), "cannot be stored as JSON"),
}


class TestOneBadEvent:
    @pytest.mark.parametrize("name", list(BAD_EVENTS))
    async def test_the_bad_event_is_dropped_and_the_batch_stored(self, client, kit, app, caplog, name):
        bad, reason = BAD_EVENTS[name]
        batch = [good(index) for index in range(50)] + [bad] + [good(index) for index in range(50, 100)]
        events = ", ".join(item if isinstance(item, str) else json.dumps(item) for item in batch)
        before = sum(dropped_events.values())
        with caplog.at_level(logging.WARNING, logger="experiments_service.events.service"):
            response = await client.post(
                "/batch/", content='{"api_key": "%s", "batch": [%s]}' % (kit.project_api_key, events),
                headers={"Content-Type": "application/json"},
            )
        assert response.status_code == 200, response.text
        rows = await stored(app, kit.project_id)
        assert sorted(row.distinct_id for row in rows) == sorted(f"user-{index}" for index in range(100))
        assert sum(dropped_events.values()) == before + 1
        assert any("dropped event 50 of 101" in record.getMessage() and reason in record.getMessage() for record in caplog.records)

    async def test_a_lone_surrogate_drops_only_its_event(self, client, kit, app):
        body = '{"api_key": "%s", "batch": [{"event": "a", "distinct_id": "u", "properties": {"s": "\\ud800"}}, ' \
               '{"event": "b", "distinct_id": "u"}]}' % kit.project_api_key
        response = await client.post("/batch/", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        assert [row.event for row in await stored(app, kit.project_id)] == ["b"]

    async def test_a_body_too_deep_to_read_is_refused_whole(self, client, kit, app):
        body = '{"api_key": "%s", "batch": [%s]}' % (kit.project_api_key, "[" * 10_000 + "]" * 10_000)
        response = await client.post("/batch/", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert await stored(app, kit.project_id) == []

    async def test_nul_elsewhere_in_a_flag_call_is_stripped_and_the_event_kept(self, client, kit, app):
        sent = flag_call("my-flag", "test")
        sent["properties"]["$current_url"] = "https://a\x00b"
        response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": [sent]})
        assert response.status_code == 200
        [row] = await stored(app, kit.project_id)
        assert (row.flag_key, row.flag_response, row.properties["$current_url"]) == ("my-flag", "test", "https://ab")
