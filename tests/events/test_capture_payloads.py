"""Capture endpoints accept every payload shape PostHog clients send, authenticated by the
project API key."""

import base64
import gzip
import json
import uuid
from urllib.parse import urlencode

import orjson
import pytest

from tests.events.helpers import event, stored_events, stored_person

CAPTURE_PATHS = ["/batch/", "/capture/", "/e/", "/i/v0/e/"]
OK = {"status": 1}


class TestCapturePaths:
    @pytest.mark.parametrize("path", CAPTURE_PATHS + [path.rstrip("/") for path in CAPTURE_PATHS])
    async def test_every_capture_path_stores_the_event(self, client, kit, app, path):
        sent = event("signed_up", "path-user", properties={"plan": "pro"})
        response = await client.post(path, json={"api_key": kit.project_api_key, **sent})
        assert response.status_code == 200
        assert response.json() == OK
        [stored] = await stored_events(app, kit.project_id)
        assert (stored.event, stored.distinct_id, str(stored.uuid)) == ("signed_up", "path-user", sent["uuid"])
        assert stored.properties == {"plan": "pro"}
        assert stored.flag_key is None and stored.flag_response is None

    async def test_browser_origin_gets_cors_headers(self, client, kit, app):
        origin = {"Origin": "https://shop.example"}
        preflight = await client.options("/e/", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        response = await client.post("/e/", json={"token": kit.project_api_key, **event("from-browser")}, headers=origin)
        assert response.status_code == 200 and response.json() == OK
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["from-browser"]

    async def test_no_origin_no_cors_headers(self, client, kit):
        response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": [event("a")]})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers

    async def test_get_is_not_a_capture_method(self, client, kit):
        response = await client.get("/batch/")
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"


class TestPayloadShapes:
    async def test_batch_with_top_level_api_key(self, client, kit, app):
        batch = [event("a", "u1"), event("b", "u2"), event("c", "u3")]
        response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
        assert response.status_code == 200 and response.json() == OK
        stored = await stored_events(app, kit.project_id)
        assert [(row.event, row.distinct_id) for row in stored] == [("a", "u1"), ("b", "u2"), ("c", "u3")]
        assert {str(row.uuid) for row in stored} == {item["uuid"] for item in batch}

    async def test_batch_with_per_event_api_key(self, client, kit, app):
        batch = [{**event("a"), "api_key": kit.project_api_key}, {**event("b"), "api_key": kit.project_api_key}]
        response = await client.post("/batch/", json={"batch": batch})
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a", "b"]

    async def test_single_event_with_token(self, client, kit, app):
        response = await client.post("/capture/", json={"token": kit.project_api_key, **event("clicked")})
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["clicked"]

    async def test_token_in_event_properties(self, client, kit, app):
        sent = event("clicked", properties={"token": kit.project_api_key, "color": "red"})
        response = await client.post("/e/", json=sent)
        assert response.status_code == 200
        [stored] = await stored_events(app, kit.project_id)
        assert stored.properties == {"token": kit.project_api_key, "color": "red"}

    async def test_token_in_query_string(self, client, kit, app):
        response = await client.post(f"/i/v0/e/?token={kit.project_api_key}", json=event("queried"))
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["queried"]

    async def test_bare_list_of_events(self, client, kit, app):
        batch = [{**event("a"), "token": kit.project_api_key}, event("b")]
        response = await client.post("/e/", json=batch)
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a", "b"]

    async def test_distinct_id_from_properties(self, client, kit, app):
        sent = {"event": "a", "properties": {"distinct_id": "from-props"}, "api_key": kit.project_api_key}
        response = await client.post("/capture/", json=sent)
        assert response.status_code == 200
        [stored] = await stored_events(app, kit.project_id)
        assert stored.distinct_id == "from-props"

    async def test_numeric_distinct_id_is_stored_as_text(self, client, kit, app):
        response = await client.post("/capture/", json={**event("a", 42), "api_key": kit.project_api_key})
        assert response.status_code == 200
        [stored] = await stored_events(app, kit.project_id)
        assert stored.distinct_id == "42"

    async def test_generates_a_uuid_when_absent(self, client, kit, app):
        sent = {"event": "a", "distinct_id": "u", "api_key": kit.project_api_key}
        response = await client.post("/capture/", json=sent)
        assert response.status_code == 200
        [stored] = await stored_events(app, kit.project_id)
        assert isinstance(stored.uuid, uuid.UUID)

    async def test_large_batch_is_stored_whole(self, client, kit, app):
        batch = [event("bulk", f"user-{index % 300}", properties={"$set": {"n": index}}) for index in range(3000)]
        response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
        assert response.status_code == 200
        stored = await stored_events(app, kit.project_id)
        assert [str(row.uuid) for row in stored] == [item["uuid"] for item in batch]
        assert (await stored_person(app, kit.project_id, "user-7")).properties == {"n": 2707}

    async def test_empty_batch_is_accepted(self, client, kit, app):
        response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": []})
        assert response.status_code == 200 and response.json() == OK
        assert await stored_events(app, kit.project_id) == []


class TestEncodings:
    @staticmethod
    def body(kit, *names: str) -> bytes:
        return orjson.dumps({"api_key": kit.project_api_key, "batch": [event(name) for name in names]})

    async def test_gzip_content_encoding(self, client, kit, app):
        response = await client.post(
            "/batch/",
            content=gzip.compress(self.body(kit, "a", "b")),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 200 and response.json() == OK
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a", "b"]

    @pytest.mark.parametrize("compression", ["gzip", "gzip-js"])
    async def test_gzip_compression_query_parameter(self, client, kit, app, compression):
        response = await client.post(
            f"/e/?compression={compression}", content=gzip.compress(self.body(kit, "a")),
            headers={"Content-Type": "text/plain"},
        )
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]

    async def test_gzip_recognised_without_a_header(self, client, kit, app):
        response = await client.post("/batch/", content=gzip.compress(self.body(kit, "a")))
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]

    async def test_base64_body(self, client, kit, app):
        response = await client.post("/e/", content=base64.b64encode(self.body(kit, "a", "b")))
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a", "b"]

    async def test_unpadded_urlsafe_base64_body(self, client, kit, app):
        encoded = base64.urlsafe_b64encode(self.body(kit, "a")).rstrip(b"=")
        response = await client.post("/e/", content=encoded)
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]

    async def test_form_encoded_base64_data(self, client, kit, app):
        form = urlencode({"data": base64.b64encode(self.body(kit, "a")).decode(), "ver": "1.0"})
        response = await client.post(
            "/e/", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]

    async def test_form_encoded_json_data(self, client, kit, app):
        form = urlencode({"data": self.body(kit, "a", "b").decode()})
        response = await client.post(
            "/e/", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a", "b"]

    async def test_python_style_nan_and_infinity_become_null(self, client, kit, app):
        sent = {"api_key": kit.project_api_key, "batch": [event("a", properties={"ratio": float("nan"), "cap": float("inf")})]}
        response = await client.post("/batch/", content=json.dumps(sent), headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.properties == {"ratio": None, "cap": None}

    async def test_lone_surrogates_are_refused_even_beside_nan(self, client, kit, app):
        body = '{"api_key": "%s", "batch": [{"event": "a", "distinct_id": "u", "properties": {"x": NaN, "s": "\\ud800"}}]}'
        response = await client.post("/batch/", content=body % kit.project_api_key, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_payload"
        assert await stored_events(app, kit.project_id) == []

    async def test_lz64_is_refused_clearly(self, client, kit, app):
        response = await client.post("/e/?compression=lz64", content=b"N4IgLgpgJg")
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "invalid_payload",
            "detail": "lz64 compression is not supported; send gzip or plain JSON.",
            "attr": None,
        }

    async def test_corrupt_gzip_is_a_parse_error(self, client, kit, app):
        response = await client.post("/batch/", content=b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
        assert response.status_code == 400
        body = response.json()
        assert (body["type"], body["code"]) == ("invalid_request", "invalid_payload")
        assert body["detail"].startswith("Malformed request data: invalid gzip body")


class TestAuthentication:
    async def test_missing_api_key(self, client, kit, app):
        response = await client.post("/batch/", json={"batch": [event("a")]})
        assert response.status_code == 401
        assert response.json() == {
            "type": "authentication_error",
            "code": "missing_api_key",
            "detail": "API key not provided. You can find your project API key in PostHog project settings.",
            "attr": None,
        }
        assert await stored_events(app, kit.project_id) == []

    @pytest.mark.parametrize("token", ["phc_not_a_real_key", 12345, {"nested": True}])
    async def test_invalid_api_key(self, client, kit, app, token):
        response = await client.post("/batch/", json={"api_key": token, "batch": [event("a")]})
        assert response.status_code == 401
        assert response.json() == {
            "type": "authentication_error",
            "code": "invalid_api_key",
            "detail": "Project API key invalid. You can find your project API key in PostHog project settings.",
            "attr": None,
        }
        assert await stored_events(app, kit.project_id) == []

    async def test_personal_api_key_does_not_authenticate_capture(self, client, kit, app):
        response = await client.post("/batch/", json={"api_key": kit.personal_api_key, "batch": [event("a")]})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"
        assert await stored_events(app, kit.project_id) == []

    async def test_events_go_to_the_key_s_project_only(self, client, kit, app):
        from tests.factories import make_kit

        other = await make_kit(app, client)
        response = await client.post("/batch/", json={"api_key": other.project_api_key, "batch": [event("theirs")]})
        assert response.status_code == 200
        assert await stored_events(app, kit.project_id) == []
        assert [row.event for row in await stored_events(app, other.project_id)] == ["theirs"]


class TestIdempotency:
    async def test_redelivered_batch_is_stored_once(self, capture, kit, app):
        batch = [event("a"), event("b")]
        first = await capture({"batch": batch})
        second = await capture({"batch": batch})
        assert first.status_code == second.status_code == 200
        stored = await stored_events(app, kit.project_id)
        assert sorted(str(row.uuid) for row in stored) == sorted(item["uuid"] for item in batch)

    async def test_duplicate_uuid_inside_one_batch_is_stored_once(self, capture, kit, app):
        duplicate = event("a")
        response = await capture({"batch": [duplicate, {**duplicate, "event": "a-again"}]})
        assert response.status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["a"]

    async def test_same_uuid_in_another_project_is_a_different_event(self, client, capture, kit, app):
        from tests.factories import make_kit

        other = await make_kit(app, client)
        shared = event("a")
        assert (await capture({"batch": [shared]})).status_code == 200
        response = await client.post("/batch/", json={"api_key": other.project_api_key, "batch": [shared]})
        assert response.status_code == 200
        assert len(await stored_events(app, kit.project_id)) == 1
        assert len(await stored_events(app, other.project_id)) == 1


class TestFeatureFlagCalledColumns:
    @pytest.mark.parametrize(
        ("response_value", "stored"), [(True, "true"), (False, "false"), ("test", "test"), ("control", "control")]
    )
    async def test_flag_key_and_response_are_extracted(self, capture, kit, app, response_value, stored):
        sent = event(
            "$feature_flag_called", properties={"$feature_flag": "checkout", "$feature_flag_response": response_value}
        )
        assert (await capture({"batch": [sent]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert (row.flag_key, row.flag_response) == ("checkout", stored)
        assert row.properties["$feature_flag_response"] == response_value

    async def test_other_events_carry_no_flag_columns(self, capture, kit, app):
        sent = event("$pageview", properties={"$feature_flag": "checkout", "$feature_flag_response": "test"})
        assert (await capture({"batch": [sent]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert (row.flag_key, row.flag_response) == (None, None)
