"""Hostile input on `/flags`, `/decide` and capture's token, and regex conditions on RE2."""

import time
import uuid

import pytest
from sqlalchemy import select

from experiments_service.models import HashKeyOverride

INVALID_KEY = "invalid_api_key"


async def make_flag(kit, key: str, properties: list[dict], **fields) -> dict:
    body = {"key": key, "name": key, "filters": {"groups": [{"properties": properties, "rollout_percentage": 100}]}, **fields}
    response = await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def evaluate(kit, body: dict, path: str = "/flags/?v=2") -> dict:
    response = await kit.client.post(path, json={"token": kit.project_api_key, **body})
    assert response.status_code == 200, response.text
    return response.json()


def person_condition(operator: str, value: str) -> list[dict]:
    return [{"key": "k", "type": "person", "operator": operator, "value": value}]


class TestTokens:
    @pytest.mark.parametrize("path", ["/batch/", "/flags/?v=2", "/decide/?v=3"])
    @pytest.mark.parametrize("token", ["phc_\x00", "\x00", "phc_" + "x" * 500])
    async def test_a_token_no_project_can_have_is_invalid_not_a_server_error(self, client, path, token):
        body = {"api_key": token, "token": token, "distinct_id": "u", "batch": [{"event": "a", "distinct_id": "u"}]}
        response = await client.post(path, json=body)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == INVALID_KEY

    @pytest.mark.parametrize("path", ["/batch/", "/flags/?v=2&", "/decide/?"])
    async def test_a_query_token_with_nul_is_invalid(self, client, path):
        separator = "" if path.endswith(("&", "?")) else "?"
        response = await client.post(f"{path}{separator}token=phc_%00", json={"distinct_id": "u", "batch": []})
        assert response.status_code == 401, response.text


class TestIdentifiers:
    async def test_nul_in_distinct_id_reads_the_person_stored_without_it(self, kit):
        await make_flag(kit, "plan-flag", person_condition("exact", "pro"))
        captured = await kit.client.post(
            "/batch/", json={"api_key": kit.project_api_key, "batch": [{"event": "$set", "distinct_id": "ad\x00a", "$set": {"k": "pro"}}]}
        )
        assert captured.status_code == 200
        body = await evaluate(kit, {"distinct_id": "ad\x00a"})
        assert body["flags"]["plan-flag"]["enabled"] is True

    async def test_nul_in_anon_distinct_id_stores_a_continuity_override_without_it(self, kit):
        await make_flag(kit, "sticky", [], ensure_experience_continuity=True)
        body = await evaluate(kit, {"distinct_id": "us\x00er", "$anon_distinct_id": "an\x00on"})
        assert body["flags"]["sticky"]["enabled"] is True
        async with kit.app.state.db.sessionmaker() as session:
            rows = (await session.execute(select(HashKeyOverride).where(HashKeyOverride.project_id == kit.project_id))).scalars()
            assert [(row.distinct_id, row.hash_key) for row in rows] == [("user", "anon")]


    async def test_a_long_id_finds_the_person_capture_stored_and_skips_the_override(self, kit):
        await make_flag(kit, "sticky-long", [], ensure_experience_continuity=True)
        await make_flag(kit, "plan-long", person_condition("exact", "pro"))
        user, anon = "u" * 1000, "a" * 5000
        captured = await kit.client.post(
            "/batch/", json={"api_key": kit.project_api_key, "batch": [{"event": "$set", "distinct_id": user, "$set": {"k": "pro"}}]}
        )
        assert captured.status_code == 200
        body = await evaluate(kit, {"distinct_id": user, "$anon_distinct_id": anon})
        assert body["flags"]["plan-long"]["enabled"] is True
        async with kit.app.state.db.sessionmaker() as session:
            rows = (await session.execute(select(HashKeyOverride).where(HashKeyOverride.project_id == kit.project_id))).scalars()
            assert list(rows) == []  # longer than the columns: not stored, the flag hashes as usual


class TestBodies:
    @pytest.mark.parametrize("depth", [300, 990, 10_000])
    @pytest.mark.parametrize("path", ["/flags/?v=2", "/decide/?v=3"])
    async def test_deeply_nested_person_properties_are_refused(self, kit, path, depth):
        body = '{"token": "%s", "distinct_id": "u", "person_properties": {"k": %s}}' % (
            kit.project_api_key, "[" * depth + "]" * depth
        )
        response = await kit.client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text

    async def test_a_lone_surrogate_is_refused(self, kit):
        body = '{"token": "%s", "distinct_id": "\\ud800"}' % kit.project_api_key
        response = await kit.client.post("/flags/?v=2", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text


class TestRegexConditions:
    async def test_a_catastrophic_pattern_runs_in_linear_time(self, kit):
        await make_flag(kit, "redos", person_condition("regex", "(a+)+$"))
        started = time.perf_counter()
        body = await evaluate(kit, {"distinct_id": "u", "person_properties": {"k": "a" * 40 + "!"}})
        assert time.perf_counter() - started < 1.0  # Python's re needs hours for 40 characters
        assert body["flags"]["redos"]["enabled"] is False
        body = await evaluate(kit, {"distinct_id": "u", "person_properties": {"k": "baaa"}})
        assert body["flags"]["redos"]["enabled"] is True

    @pytest.mark.parametrize(
        ("pattern", "value", "expected"),
        [(r"^\d{3}-\w+$", "123-abc", True), ("(?i)^PRO", "professional", True), ("^pro", "Pro", False),
         (r"example\.com$", "a@example.com", True), ("[", "x", None)],
    )
    async def test_posthog_semantics_are_kept(self, kit, pattern, value, expected):
        key = f"re-{uuid.uuid4().hex[:8]}"
        if expected is None:
            response = await kit.client.post(
                f"{kit.base}/feature_flags/", json={"key": key, "filters": {"groups": [{"properties": person_condition("regex", pattern)}]}},
                headers=kit.headers,
            )
            assert response.status_code == 400
            return
        await make_flag(kit, key, person_condition("regex", pattern))
        body = await evaluate(kit, {"distinct_id": "u", "person_properties": {"k": value}})
        assert body["flags"][key]["enabled"] is expected

    @pytest.mark.parametrize("pattern", ["(?=a)b", r"(a)\1", "(?<!x)y"])
    async def test_a_pattern_re2_cannot_compile_is_refused_when_saved(self, kit, pattern):
        response = await kit.client.post(
            f"{kit.base}/feature_flags/",
            json={"key": "lookaround", "filters": {"groups": [{"properties": person_condition("not_regex", pattern)}]}},
            headers=kit.headers,
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["type"] == "validation_error"
        assert "invalid regex pattern" in body["detail"] and "RE2 syntax" in body["detail"]
        listed = await kit.client.get(f"{kit.base}/feature_flags/", headers=kit.headers)
        assert listed.json()["count"] == 0
