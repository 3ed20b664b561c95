"""Invalid events are dropped one by one; only an unreadable body fails the request."""

import base64
import gzip

import pytest

from tests.events.helpers import event, stored_events


class TestPerEventDrops:
    async def test_mixed_batch_keeps_the_valid_events(self, capture, kit, app):
        valid = [event("kept-1", "u1"), event("kept-2", "u2", properties={"n": 1})]
        invalid = [
            "not an object",
            42,
            None,
            {"distinct_id": "u", "properties": {}},  # no event name
            {"event": "", "distinct_id": "u"},
            {"event": 7, "distinct_id": "u"},
            {"event": "x" * 401, "distinct_id": "u"},
            {"event": "no-distinct-id", "properties": {}},
            {"event": "blank-distinct-id", "distinct_id": ""},
            {"event": "object-distinct-id", "distinct_id": {"id": 1}},
            {"event": "list-properties", "distinct_id": "u", "properties": [1, 2]},
            {"event": "string-properties", "distinct_id": "u", "properties": "a=b"},
            {"event": "bad-timestamp", "distinct_id": "u", "timestamp": "yesterday-ish"},
            {"event": "bool-timestamp", "distinct_id": "u", "timestamp": True},
            {"event": "bad-uuid", "distinct_id": "u", "uuid": "not-a-uuid"},
            {"event": "numeric-uuid", "distinct_id": "u", "uuid": 12},
            {"event": "text-offset", "distinct_id": "u", "offset": "100"},
        ]
        response = await capture({"batch": [invalid[0], valid[0], *invalid[1:], valid[1]]})
        assert response.status_code == 200
        assert response.json() == {"status": 1}
        stored = await stored_events(app, kit.project_id)
        assert [(row.event, row.distinct_id, str(row.uuid)) for row in stored] == [
            (item["event"], item["distinct_id"], item["uuid"]) for item in valid
        ]

    async def test_batch_of_only_invalid_events_is_accepted_and_stores_nothing(self, capture, kit, app):
        response = await capture({"batch": [{"event": "no-distinct-id"}, {"distinct_id": "no-name"}]})
        assert response.status_code == 200 and response.json() == {"status": 1}
        assert await stored_events(app, kit.project_id) == []

    async def test_null_properties_are_an_empty_object(self, capture, kit, app):
        response = await capture({"batch": [event("a", properties=None)]})
        assert response.status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.properties == {}

    async def test_nul_characters_are_removed_from_names_and_ids(self, capture, kit, app):
        response = await capture({"batch": [event("sign\x00up", "us\x00er", properties={"note": "a\x00b"})]})
        assert response.status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert (row.event, row.distinct_id) == ("signup", "user")
        assert row.properties == {"note": "a\x00b"}

    async def test_long_distinct_id_is_truncated_to_200_characters(self, capture, kit, app):
        response = await capture({"batch": [event("a", "d" * 300)]})
        assert response.status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.distinct_id == "d" * 200


class TestWholeBodyErrors:
    async def test_malformed_json(self, client, kit, app):
        response = await client.post("/batch/", content=b'{"api_key": "x", "batch": [', headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        body = response.json()
        assert (body["type"], body["code"], body["attr"]) == ("invalid_request", "invalid_payload", None)
        assert body["detail"].startswith("Malformed request data: ")

    @pytest.mark.parametrize("payload", [b'"just a string"', b"42", b"true", b"null"])
    async def test_json_scalars_are_refused(self, client, kit, payload):
        response = await client.post("/batch/", content=payload, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid_payload"
        assert body["detail"].startswith("Malformed request data")

    @pytest.mark.parametrize("payload", [b'"just a string"', b"42", b"null"])
    async def test_decoded_json_that_is_not_an_object_or_list(self, client, kit, payload):
        response = await client.post("/e/", content=b"data=" + base64.b64encode(payload))
        assert response.status_code == 400
        body = response.json()
        assert (body["type"], body["code"]) == ("validation_error", "invalid_payload")
        assert body["detail"].startswith("Malformed request data: expected a JSON object or list")

    async def test_batch_that_is_not_a_list(self, capture, kit, app):
        response = await capture({"batch": {"event": "a", "distinct_id": "u"}})
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "invalid_payload",
            "detail": "Malformed request data: `batch` must be a list.",
            "attr": "batch",
        }
        assert await stored_events(app, kit.project_id) == []

    async def test_empty_body(self, client):
        response = await client.post("/batch/", content=b"")
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "no_data",
            "detail": "No data found. Make sure to use a POST request when sending the payload in the body of the request.",
            "attr": None,
        }

    async def test_invalid_sent_at_fails_the_request(self, capture, kit, app):
        response = await capture({"sent_at": "not a time", "batch": [event("a")]})
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "invalid_payload",
            "detail": "Malformed request data, invalid sent at: 'not a time'",
            "attr": "sent_at",
        }
        assert await stored_events(app, kit.project_id) == []


class TestSizeLimits:
    async def test_declared_body_over_the_limit_is_413(self, client, kit, app):
        limit = app.state.settings.max_body_bytes
        response = await client.post("/batch/", content=b" " * (limit + 1), headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json() == {
            "type": "invalid_request",
            "code": "payload_too_large",
            "detail": "Request body is too large.",
            "attr": None,
        }

    async def test_streamed_body_over_the_limit_is_413(self, client, kit, app):
        limit = app.state.settings.max_body_bytes
        chunk = b" " * (1024 * 1024)

        async def chunks():
            for _ in range(limit // len(chunk) + 2):
                yield chunk

        response = await client.post("/batch/", content=chunks())
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    async def test_gzip_bomb_is_413_and_stores_nothing(self, client, kit, app):
        limit = app.state.settings.max_body_bytes
        padding = " " * (limit + 1)
        bomb = gzip.compress(
            f'{{"api_key": "{kit.project_api_key}", "batch": [{{"event": "a", "distinct_id": "u"}}]{padding}}}'.encode()
        )
        assert len(bomb) < limit // 100
        response = await client.post("/batch/", content=bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert response.json() == {
            "type": "invalid_request",
            "code": "payload_too_large",
            "detail": "Request body is too large once decompressed.",
            "attr": None,
        }
        assert await stored_events(app, kit.project_id) == []

    async def test_gzip_inflating_to_exactly_the_limit_is_accepted(self, client, kit, app):
        limit = app.state.settings.max_body_bytes
        document = f'{{"api_key": "{kit.project_api_key}", "batch": [{{"event": "a", "distinct_id": "u"}}]}}'.encode()
        body = gzip.compress(document + b" " * (limit - len(document)))
        response = await client.post("/batch/", content=body, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]
