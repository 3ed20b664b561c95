"""The edge: the streaming body limit on every route, and JSON limits on API bodies and queries."""

import gzip
import os
import time
import uuid

import pytest
from sqlalchemy import func, select

from experiments_service.models import Experiment, FeatureFlag

MB = 1 << 20


class Chunks:
    """A chunked request body of `count` one-megabyte chunks that counts how many were read."""

    def __init__(self, count: int, chunk: bytes = b" " * MB):
        self.count, self.chunk, self.sent = count, chunk, 0

    async def __aiter__(self):
        for _ in range(self.count):
            self.sent += 1
            yield self.chunk


async def stored_count(app, model, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(model).where(model.project_id == project_id))).scalar_one()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def too_large(response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "type": "invalid_request", "code": "payload_too_large", "detail": "Request body is too large.", "attr": None
    }


class TestBodyLimit:
    @pytest.mark.parametrize("path", ["/api/projects/1/experiments/", "/api/projects/1/feature_flags/", "/batch/", "/flags/", "/decide/"])
    async def test_a_chunked_body_without_a_key_is_refused_once_past_the_limit(self, client, path):
        body = Chunks(200)  # 200 MB, far past the 20 MB limit, with no Content-Length
        response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
        too_large(response)
        assert body.sent <= 21  # read up to the limit, not whole

    async def test_a_browser_sees_the_413_of_an_sdk_endpoint(self, client):
        response = await client.post("/batch/", content=Chunks(30), headers={"Origin": "https://shop.example"})
        too_large(response)
        assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"

    async def test_a_declared_length_past_the_limit_is_refused_unread(self, client):
        body = Chunks(1)
        response = await client.post(
            "/api/projects/1/experiments/", content=body, headers={"Content-Length": str(200 * MB)}
        )
        too_large(response)
        assert body.sent == 0

    @pytest.mark.parametrize("path", ["/api/projects/1/experiments/", "/batch/"])
    async def test_a_compressed_body_counts_as_sent(self, client, path):
        body = Chunks(200, chunk=os.urandom(MB))  # does not shrink: its sent size is what counts
        response = await client.post(path, content=body, headers={"Content-Encoding": "gzip"})
        too_large(response)
        assert body.sent <= 21

    async def test_a_gzip_bomb_is_refused_once_inflated_past_the_limit(self, client, kit):
        bomb = gzip.compress(b"[" + b" " * (30 * MB) + b"]")  # about 30 KB on the wire
        response = await client.post(
            f"/batch/?token={kit.project_api_key}", content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    async def test_a_body_within_the_limit_reaches_the_route(self, kit):
        response = await kit.client.post(
            f"{kit.base}/experiments/", content=Chunks(1, b'{"name": "Chunked", "feature_flag_key": "chunked"}'),
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert await stored_count(kit.app, Experiment, kit.project_id) == 1


async def post_text(kit, collection: str, body: str | bytes):
    """POST JSON text as sent (the standard encoder refuses what these tests send)."""
    return await kit.client.post(
        f"{kit.base}/{collection}/", content=body, headers={**kit.headers, "Content-Type": "application/json"}
    )


def refused(response, code: str, attr: str | None = None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["type"], body["code"]) == ("validation_error", code), body
    if attr is not None:
        assert body["attr"] == attr


class TestJsonLimits:
    @pytest.mark.parametrize("depth", [300, 990, 10_000])
    @pytest.mark.parametrize("field", ["parameters", "filters", "stats_config", "metrics"])
    async def test_deep_nesting_in_an_experiment_is_refused(self, kit, field, depth):
        body = '{"name": "Deep", "feature_flag_key": "deep-%s", "%s": {"a": %s}}' % (uuid.uuid4().hex[:8], field, nested(depth))
        response = await post_text(kit, "experiments", body)
        refused(response, "max_depth")
        assert "deeper than 64 levels" in response.json()["detail"]
        assert await stored_count(kit.app, Experiment, kit.project_id) == 0
        assert await stored_count(kit.app, FeatureFlag, kit.project_id) == 0

    async def test_nesting_within_the_limit_is_stored(self, kit):
        body = '{"name": "Nested", "feature_flag_key": "nested", "parameters": {"a": %s}}' % nested(60)
        response = await post_text(kit, "experiments", body)
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("text", "code"),
        [("\\u0000", "null_characters_not_allowed"), ("\\ud800", "invalid_input"), ("\\udfff x", "invalid_input")],
    )
    @pytest.mark.parametrize(
        "template",
        [
            '{"name": "N", "feature_flag_key": "k-%(u)s", "parameters": {"feature_flag_variants": [{"key": "control%(t)s"}]}}',
            '{"name": "N", "feature_flag_key": "k-%(u)s%(t)s"}',
            '{"name": "N", "feature_flag_key": "k-%(u)s", "metrics": [{"kind": "ExperimentMetric", "name": "%(t)s"}]}',
            '{"name": "N%(t)s", "feature_flag_key": "k-%(u)s"}',
        ],
    )
    async def test_nul_and_lone_surrogates_in_an_experiment_are_refused(self, kit, template, text, code):
        body = template % {"u": uuid.uuid4().hex[:8], "t": text}
        response = await post_text(kit, "experiments", body)
        refused(response, code)
        assert await stored_count(kit.app, Experiment, kit.project_id) == 0

    @pytest.mark.parametrize("text", ["\\u0000", "\\ud800"])
    @pytest.mark.parametrize(
        "template",
        [
            '{"key": "f-%(u)s", "name": "Flag %(t)s"}',
            '{"key": "f-%(u)s", "filters": {"groups": [{"properties": [{"key": "e%(t)s", "value": "x"}]}]}}',
        ],
    )
    async def test_nul_and_lone_surrogates_in_a_flag_are_refused(self, kit, template, text):
        body = template % {"u": uuid.uuid4().hex[:8], "t": text}
        response = await post_text(kit, "feature_flags", body)
        assert response.status_code == 400, response.text
        assert await stored_count(kit.app, FeatureFlag, kit.project_id) == 0

    async def test_text_that_only_looks_bad_is_stored(self, kit):
        """The checks read JSON text: escaped backslashes, brackets and NaN inside strings are text."""
        body = (
            '{"name": "C:\\\\u0000 NaN", "feature_flag_key": "looks-bad", '
            '"parameters": {"note": "%s \\" %s", "emoji": "\\ud83d\\ude00", "big": 18446744073709551615, "e": 1e300}}'
        ) % ("[" * 100, "{" * 100)
        response = await post_text(kit, "experiments", body)
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "C:\\u0000 NaN"
        assert response.json()["parameters"]["emoji"] == "\U0001f600"

    async def test_a_large_body_without_a_key_is_checked_in_one_pass(self, client):
        body = b"[" + b",".join([b"1"] * 2_000_000) + b"]"  # 4 MB: a Python loop over its values took 8 s
        started = time.perf_counter()
        response = await client.post("/api/projects/1/experiments/", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 401
        assert time.perf_counter() - started < 15  # generous for a busy machine: 1.5 s measured at load average 8 on 2 cores

    async def test_a_string_past_the_length_limit_is_refused(self, kit):
        response = await kit.client.post(
            f"{kit.base}/experiments/",
            json={"name": "Long", "feature_flag_key": "long", "parameters": {"note": "x" * 100_001}},
            headers=kit.headers,
        )
        refused(response, "max_length", "parameters")
        assert await stored_count(kit.app, Experiment, kit.project_id) == 0

    @pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", str(2**64), str(-(2**63) - 1)])
    async def test_numbers_json_columns_cannot_hold_are_refused(self, kit, number):
        body = '{"name": "N", "feature_flag_key": "n", "parameters": {"x": %s}}' % number
        response = await post_text(kit, "experiments", body)
        assert response.status_code == 400, response.text
        assert await stored_count(kit.app, Experiment, kit.project_id) == 0

    async def test_an_integer_beyond_64_bits_in_a_flag_is_refused_and_flags_keep_serving(self, kit):
        body = '{"key": "big", "filters": {"groups": [{"properties": [{"key": "k", "value": %d}]}]}}' % (2**64 + 1)
        refused(await post_text(kit, "feature_flags", body), "max_value", "filters")
        assert await stored_count(kit.app, FeatureFlag, kit.project_id) == 0
        served = await kit.client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "u"})
        assert served.status_code == 200

    async def test_a_body_that_is_not_utf8_is_a_parse_error(self, kit):
        response = await post_text(kit, "experiments", b'{"name": "\xff\xfe"}')
        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"

    @pytest.mark.parametrize(("value", "code"), [(nested(300), "max_depth"), ('["a\\u0000"]', "null_characters_not_allowed"), ("a\x00", "null_characters_not_allowed")])
    async def test_a_json_query_parameter_is_held_to_the_limits(self, kit, value, code):
        response = await kit.client.get(
            f"{kit.base}/experiments/requires_flag_implementation/", params={"events": value}, headers=kit.headers
        )
        refused(response, code, "events")

    async def test_surrogates_in_the_timeseries_fingerprint_are_refused(self, kit):
        body = '{"metric": {"uuid": "m"}, "fingerprint": "\\ud800"}'
        response = await kit.client.post(
            f"{kit.base}/experiments/1/recalculate_timeseries/", content=body,
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        refused(response, "invalid_input", "fingerprint")

    async def test_a_change_request_reason_with_nul_is_refused(self, kit):
        response = await kit.client.post(
            f"{kit.base}/change_requests/1/reject/", json={"reason": "no\x00"}, headers=kit.headers
        )
        refused(response, "null_characters_not_allowed", "reason")
