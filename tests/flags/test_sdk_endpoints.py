"""`/flags` and `/decide`: encodings, aliases, versioned shapes, auth, bad input, stored data."""

import base64
import gzip
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from experiments_service.models import HashKeyOverride, Person
from tests.factories import boolean_filters, create_flag, multivariate_filters

VECTORS_FILE = Path(__file__).resolve().parent / "data" / "vectors-sample.json"
VECTORS = json.loads(VECTORS_FILE.read_text()) if VECTORS_FILE.exists() else None

INVALID_KEY_BODY = {
    "type": "authentication_error",
    "code": "invalid_api_key",
    "detail": "Project API key invalid. You can find your project API key in PostHog project settings.",
    "attr": None,
}


async def _flags(client, body, *, version: int | str | None = 2, path: str = "/flags/", **kwargs):
    url = path if version is None else f"{path}?v={version}"
    return await client.post(url, json=body, **kwargs)


def _case(key: str, with_payload: bool = False) -> dict:
    for case in VECTORS["cases"]:
        if case["flag"]["key"] == key and ("expected_payload" in case) == with_payload:
            return case
    raise LookupError(key)


class TestResponseShapes:
    async def test_v2_details(self, client, kit):
        flag = await create_flag(kit, "on-for-all", name="Everyone", filters={**boolean_filters(100), "payloads": {"true": '{"a": 1}'}})
        response = await _flags(client, {"token": kit.project_api_key, "distinct_id": "user-1"})
        assert response.status_code == 200
        body = response.json()
        assert body["errorsWhileComputingFlags"] is False
        assert len(body["requestId"]) == 36 and isinstance(body["evaluatedAt"], int)
        assert body["flags"] == {
            "on-for-all": {
                "key": "on-for-all",
                "enabled": True,
                "variant": None,
                "reason": {"code": "condition_match", "condition_index": 0, "description": "Matched condition set 1"},
                "metadata": {"id": flag["id"], "version": 1, "description": "Everyone", "payload": '{"a": 1}', "has_experiment": False},
            }
        }

    async def test_v1_and_decide_shapes(self, client, kit):
        await create_flag(kit, "on", filters={**boolean_filters(100), "payloads": {"true": "5"}})
        await create_flag(kit, "off", filters=boolean_filters(0))
        await create_flag(kit, "multi", filters=multivariate_filters([("only", 100)], payloads={"only": '"x"'}))
        request = {"api_key": kit.project_api_key, "distinct_id": "someone"}
        expected_values = {"on": True, "off": False, "multi": "only"}
        v1 = (await _flags(client, request, version=None)).json()
        assert v1["featureFlags"] == expected_values
        assert v1["featureFlagPayloads"] == {"on": "5", "multi": '"x"'}
        assert (await _flags(client, request, version=3, path="/decide/")).json()["featureFlags"] == expected_values
        decide_v1 = (await _flags(client, request, version=1, path="/decide/")).json()
        assert sorted(decide_v1["featureFlags"]) == ["multi", "on"]
        assert (await _flags(client, request, version=2, path="/decide/")).json()["featureFlags"] == {"on": True, "multi": "only"}
        decide_v4 = (await _flags(client, request, version=4, path="/decide/")).json()
        assert {key: detail["variant"] or detail["enabled"] for key, detail in decide_v4["flags"].items()} == expected_values
        assert decide_v4["flags"]["off"]["reason"]["code"] == "out_of_rollout_bound"
        for version in (2, 3, 4):
            flags = (await _flags(client, request, version=version)).json()["flags"]
            assert flags["multi"]["variant"] == "only" and flags["multi"]["metadata"]["payload"] == '"x"'
            assert flags["off"]["metadata"]["payload"] is None

    async def test_matches_reference_vectors(self, client, kit):
        if VECTORS is None:
            pytest.skip("reference vectors not available")
        for key, with_payload in (("simple-flag", False), ("multivariate-flag", True)):
            case = _case(key, with_payload)
            await create_flag(kit, key, filters=case["flag"]["filters"])
            for distinct_id, expected in list(case["expected"].items())[:40]:
                flags = (await _flags(client, {"token": kit.project_api_key, "distinct_id": distinct_id})).json()["flags"]
                detail = flags[key]
                assert (detail["variant"] or detail["enabled"]) == expected, distinct_id
                if with_payload:
                    assert (detail["metadata"]["payload"] or "") == case["expected_payload"][distinct_id]
            await client.patch(f"{kit.base}/feature_flags/{(await client.get(f'{kit.base}/feature_flags/?search={key}', headers=kit.headers)).json()['results'][0]['id']}/", json={"deleted": True}, headers=kit.headers)

    async def test_disable_flags_answers_without_flags(self, client, kit):
        await create_flag(kit, "present")
        body = (await _flags(client, {"token": kit.project_api_key, "distinct_id": "x", "disable_flags": True})).json()
        assert body["flags"] == {} and body["errorsWhileComputingFlags"] is False

    async def test_inactive_and_deleted_flags_are_omitted(self, client, kit):
        await create_flag(kit, "live")
        await create_flag(kit, "inactive", active=False)
        deleted = await create_flag(kit, "deleted")
        await client.patch(f"{kit.base}/feature_flags/{deleted['id']}/", json={"deleted": True}, headers=kit.headers)
        flags = (await _flags(client, {"token": kit.project_api_key, "distinct_id": "x"})).json()["flags"]
        assert list(flags) == ["live"]

    async def test_flag_keys_to_evaluate_and_runtime(self, client, kit):
        await create_flag(kit, "a")
        await create_flag(kit, "b")
        await create_flag(kit, "client-only", evaluation_runtime="client")
        body = {"token": kit.project_api_key, "distinct_id": "x", "flag_keys_to_evaluate": ["b", "client-only", "unknown"]}
        server = await _flags(client, body, headers={"User-Agent": "posthog-python/7.9.1"})
        assert list(server.json()["flags"]) == ["b"]
        browser = await _flags(client, {**body, "evaluation_runtime": "client"})
        assert sorted(browser.json()["flags"]) == ["b", "client-only"]

    async def test_user_agent_picks_the_runtime_unless_declared(self, client, kit):
        await create_flag(kit, "everywhere")
        await create_flag(kit, "server-only", evaluation_runtime="server")
        await create_flag(kit, "client-only", evaluation_runtime="client")
        body = {"token": kit.project_api_key, "distinct_id": "x"}
        browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
        assert sorted((await _flags(client, body, headers=browser)).json()["flags"]) == ["client-only", "everywhere"]
        server = {"User-Agent": "posthog-node/4.2.0"}
        assert sorted((await _flags(client, body, headers=server)).json()["flags"]) == ["everywhere", "server-only"]
        declared = {**body, "evaluation_runtime": "all"}
        assert sorted((await _flags(client, declared, headers=browser)).json()["flags"]) == ["client-only", "everywhere", "server-only"]
        unknown = {"User-Agent": "curl/8.5.0"}
        assert sorted((await _flags(client, body, headers=unknown)).json()["flags"]) == ["client-only", "everywhere", "server-only"]

    async def test_remote_config_fields_on_decide_and_when_asked(self, client, kit):
        await create_flag(kit, "on")
        body = {"token": kit.project_api_key, "distinct_id": "x"}
        plain = (await _flags(client, body)).json()
        assert "supportedCompression" not in plain and "config" not in plain
        for response in (
            await client.post("/flags/?v=2&config=true", json=body),
            await _flags(client, body, version=3, path="/decide/"),
        ):
            answer = response.json()
            assert answer["supportedCompression"] == ["gzip", "gzip-js"]
            assert answer["config"] == {"enable_collect_everything": True} and answer["sessionRecording"] is False
            assert answer["featureFlags" if "featureFlags" in answer else "flags"]["on"] not in (None, False)

    async def test_evaluation_contexts_filter_tagged_flags(self, client, kit):
        await create_flag(kit, "untagged")
        await create_flag(kit, "web-only", evaluation_tags=["web"])
        plain = {"token": kit.project_api_key, "distinct_id": "x"}
        assert sorted((await _flags(client, {**plain, "evaluation_environments": ["web"]})).json()["flags"]) == ["untagged", "web-only"]
        assert sorted((await _flags(client, {**plain, "evaluation_contexts": ["mobile"]})).json()["flags"]) == ["untagged"]

    async def test_group_flag_needs_the_group(self, client, kit):
        await client.post(f"{kit.base}/groups_types/", json={"group_type": "organization"}, headers=kit.headers)
        await create_flag(kit, "org-flag", filters={"aggregation_group_type_index": 0, "groups": [{"properties": [], "rollout_percentage": 100}]})
        without = (await _flags(client, {"token": kit.project_api_key, "distinct_id": "x"})).json()["flags"]["org-flag"]
        assert without["enabled"] is False and without["reason"]["code"] == "no_group_type"
        with_group = (await _flags(client, {"token": kit.project_api_key, "distinct_id": "x", "groups": {"organization": 42}})).json()
        assert with_group["flags"]["org-flag"]["enabled"] is True


class TestEncodingsAndAliases:
    async def _values(self, client, params: dict | None = None, **kwargs) -> dict:
        response = await client.post("/flags/", params={"v": 2, **(params or {})}, **kwargs)
        assert response.status_code == 200, response.text
        return {key: detail["variant"] or detail["enabled"] for key, detail in response.json()["flags"].items()}

    async def test_every_encoding_gives_the_same_answer(self, client, kit):
        await create_flag(kit, "split", filters=multivariate_filters([("a", 34), ("b", 33), ("c", 33)]))
        raw = json.dumps({"token": kit.project_api_key, "distinct_id": "user-77"}).encode()
        expected = await self._values(client, content=raw, headers={"Content-Type": "application/json"})
        assert expected["split"] in ("a", "b", "c")
        gzipped = gzip.compress(raw)
        assert await self._values(client, content=gzipped, headers={"Content-Encoding": "gzip"}) == expected
        assert await self._values(client, content=gzipped, params={"compression": "gzip-js"}) == expected
        assert await self._values(client, content=base64.b64encode(raw), params={"compression": "base64"}) == expected
        form = urlencode({"data": base64.b64encode(raw).decode()})
        assert await self._values(client, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}) == expected
        form_json = urlencode({"data": raw.decode()})
        assert await self._values(client, content=form_json, headers={"Content-Type": "application/x-www-form-urlencoded"}) == expected

    async def test_aliases_and_numeric_distinct_id(self, client, kit):
        await create_flag(kit, "half", filters=boolean_filters(50))
        ids = [str(n) for n in range(1000, 1040)]
        by_string = [await self._values(client, json={"token": kit.project_api_key, "distinct_id": i}) for i in ids]
        by_number = [await self._values(client, json={"$token": kit.project_api_key, "$distinct_id": int(i)}) for i in ids]
        assert by_string == by_number
        assert {values["half"] for values in by_string} == {True, False}

    async def test_nan_becomes_null(self, client, kit):
        await create_flag(kit, "n", filters=boolean_filters(100, properties=[{"key": "score", "value": "1", "operator": "is_set", "type": "person"}]))
        raw = ('{"token": "%s", "distinct_id": "u", "person_properties": {"score": NaN, "x": Infinity}}' % kit.project_api_key).encode()
        response = await client.post("/flags/?v=2", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        assert response.json()["flags"]["n"]["enabled"] is True


class TestBadInput:
    async def test_missing_and_invalid_token(self, client, kit):
        missing = await _flags(client, {"distinct_id": "x"})
        assert missing.status_code == 401 and missing.json() == INVALID_KEY_BODY
        wrong = await _flags(client, {"token": "phc_nope", "distinct_id": "x"})
        assert wrong.status_code == 401 and wrong.json() == INVALID_KEY_BODY
        not_string = await _flags(client, {"token": 5, "distinct_id": "x"})
        assert not_string.status_code == 401

    @pytest.mark.parametrize(
        ("body", "attr"),
        [
            ({"distinct_id": {"a": 1}}, "distinct_id"),
            ({"distinct_id": True}, "distinct_id"),
            ({}, "distinct_id"),
            ({"distinct_id": "x", "groups": ["org"]}, "groups"),
            ({"distinct_id": "x", "groups": {"org": ["a"]}}, "groups"),
            ({"distinct_id": "x", "person_properties": [1]}, "person_properties"),
            ({"distinct_id": "x", "group_properties": {"org": 3}}, "group_properties"),
            ({"distinct_id": "x", "flag_keys_to_evaluate": "a"}, "flag_keys_to_evaluate"),
            ({"distinct_id": "x", "evaluation_runtime": "edge"}, "evaluation_runtime"),
        ],
    )
    async def test_wrong_types_are_400(self, client, kit, body, attr):
        response = await _flags(client, {"token": kit.project_api_key, **body})
        assert response.status_code == 400, response.text
        assert response.json()["attr"] == attr
        assert response.json()["type"] == "validation_error"

    @pytest.mark.parametrize(
        ("content", "params"),
        [
            (b"{not json", {}),
            (b"[1, 2]", {}),
            (b"", {}),
            (b"\x1f\x8b garbage", {}),
            (b"!!!notbase64", {"compression": "base64"}),
        ],
    )
    async def test_malformed_bodies_are_400(self, client, kit, content, params):
        response = await client.post("/flags/", content=content, params={"v": 2, **params})
        assert response.status_code == 400, response.text
        body = response.json()
        assert set(body) == {"type", "code", "detail", "attr"}
        assert body["type"] in ("invalid_request", "validation_error") and body["detail"]

    async def test_huge_bodies_are_413(self, app, client, kit):
        limit = app.state.settings.max_body_bytes
        big = json.dumps({"token": kit.project_api_key, "distinct_id": "x", "pad": "a" * (limit + 10)}).encode()
        assert (await client.post("/flags/?v=2", content=big)).status_code == 413
        bomb = gzip.compress(big)
        assert len(bomb) < limit
        response = await client.post("/flags/?v=2", content=bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413


class TestStoredState:
    async def test_stored_person_properties_fill_in_and_request_overrides(self, app, client, kit):
        condition = [{"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}]
        await create_flag(kit, "pro-only", filters=boolean_filters(100, properties=condition))
        async with app.state.db.transaction() as session:
            session.add(Person(project_id=kit.project_id, distinct_id="stored-pro", properties={"plan": "pro"}))
        base = {"token": kit.project_api_key}
        stored = (await _flags(client, {**base, "distinct_id": "stored-pro"})).json()["flags"]["pro-only"]
        assert stored["enabled"] is True
        overridden = (await _flags(client, {**base, "distinct_id": "stored-pro", "person_properties": {"plan": "free"}})).json()
        assert overridden["flags"]["pro-only"]["enabled"] is False
        unknown = (await _flags(client, {**base, "distinct_id": "nobody"})).json()["flags"]["pro-only"]
        assert unknown["enabled"] is False

    async def test_stored_person_properties_reach_a_legacy_flag(self, app, client, kit):
        legacy = {"properties": [{"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}]}
        created = await client.post(f"{kit.base}/feature_flags/", json={"key": "legacy-pro", "filters": legacy}, headers=kit.headers)
        assert created.status_code == 201, created.text
        async with app.state.db.transaction() as session:
            session.add(Person(project_id=kit.project_id, distinct_id="legacy-pro-person", properties={"plan": "pro"}))
        stored = await _flags(client, {"token": kit.project_api_key, "distinct_id": "legacy-pro-person"})
        assert stored.json()["flags"]["legacy-pro"]["enabled"] is True
        unknown = await _flags(client, {"token": kit.project_api_key, "distinct_id": "legacy-nobody"})
        assert unknown.json()["flags"]["legacy-pro"]["enabled"] is False

    async def test_experience_continuity_keeps_the_anonymous_bucket(self, app, client, kit):
        variants = [(f"v{i}", 10) for i in range(10)]
        await create_flag(kit, "sticky", filters=multivariate_filters(variants), ensure_experience_continuity=True)
        base = {"token": kit.project_api_key}
        pairs = [(f"anon-{i}", f"user-{i}") for i in range(12)]
        anon_values = [(await _flags(client, {**base, "distinct_id": anon})).json()["flags"]["sticky"]["variant"] for anon, _ in pairs]
        for (anon, user), anon_value in zip(pairs, anon_values):
            identified = await _flags(client, {**base, "distinct_id": user, "$anon_distinct_id": anon})
            assert identified.json()["flags"]["sticky"]["variant"] == anon_value
            later = await _flags(client, {**base, "distinct_id": user, "anon_distinct_id": "someone-else"})
            assert later.json()["flags"]["sticky"]["variant"] == anon_value
            plain = await _flags(client, {**base, "distinct_id": user})
            assert plain.json()["flags"]["sticky"]["variant"] == anon_value
        async with app.state.db.sessionmaker() as session:
            rows = (await session.execute(select(HashKeyOverride).where(HashKeyOverride.project_id == kit.project_id))).scalars().all()
        assert sorted((row.distinct_id, row.hash_key, row.feature_flag_key) for row in rows) == sorted(
            (user, anon, "sticky") for anon, user in pairs
        )

    async def test_overlong_identifiers_skip_the_override(self, app, client, kit):
        await create_flag(kit, "sticky-long", filters=boolean_filters(50), ensure_experience_continuity=True)
        body = {"token": kit.project_api_key, "distinct_id": "u" * 500, "$anon_distinct_id": "a" * 500}
        response = await _flags(client, body)
        assert response.status_code == 200 and "sticky-long" in response.json()["flags"]
        async with app.state.db.sessionmaker() as session:
            rows = (await session.execute(select(HashKeyOverride).where(HashKeyOverride.project_id == kit.project_id))).all()
        assert rows == []

    async def test_flag_change_is_served_at_once(self, client, kit):
        flag = await create_flag(kit, "switch")
        request = {"token": kit.project_api_key, "distinct_id": "x"}
        assert (await _flags(client, request)).json()["flags"]["switch"]["enabled"] is True
        await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"filters": boolean_filters(0)}, headers=kit.headers)
        after = (await _flags(client, request)).json()["flags"]["switch"]
        assert after["enabled"] is False and after["metadata"]["version"] == 2
        await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"active": False}, headers=kit.headers)
        assert "switch" not in (await _flags(client, request)).json()["flags"]

    async def test_has_experiment_follows_linking_and_soft_delete(self, client, kit):
        await create_flag(kit, "linked", filters=multivariate_filters([("control", 50), ("test", 50)]))
        request = {"token": kit.project_api_key, "distinct_id": "x"}

        async def has_experiment() -> bool:
            return (await _flags(client, request)).json()["flags"]["linked"]["metadata"]["has_experiment"]

        assert await has_experiment() is False
        created = await client.post(
            f"{kit.base}/experiments/", json={"name": "Linked", "feature_flag_key": "linked"}, headers=kit.headers
        )
        assert created.status_code == 201
        assert await has_experiment() is True
        deleted = await client.patch(
            f"{kit.base}/experiments/{created.json()['id']}/", json={"deleted": True}, headers=kit.headers
        )
        assert deleted.status_code == 200
        assert await has_experiment() is False


async def test_chunked_body_over_the_limit_is_413(app, client, kit):
    limit = app.state.settings.max_body_bytes
    chunk = b" " * (1024 * 1024)

    async def chunks():
        yield b'{"token": "%s", "distinct_id": "x", "pad": "' % kit.project_api_key.encode()
        for _ in range(limit // len(chunk) + 2):
            yield chunk
        yield b'"}'

    response = await client.post("/flags/?v=2", content=chunks())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_random_field_types_never_give_a_500(client, kit):
    import random

    await create_flag(kit, "fuzzed", filters=boolean_filters(50, properties=[{"key": "plan", "value": "pro", "type": "person"}]))
    rng = random.Random(5)
    shapes = [None, True, 0, -1, 1.5, 10**30, "", "text", [], ["a"], [1, {"x": None}], {}, {"a": 1}, {"a": {"b": [1]}}]
    fields = ["distinct_id", "groups", "person_properties", "group_properties", "$anon_distinct_id", "device_id",
              "flag_keys_to_evaluate", "evaluation_contexts", "evaluation_runtime", "$groups", "$properties"]
    for _ in range(150):
        body = {"token": kit.project_api_key, "distinct_id": "fuzz"}
        for field in rng.sample(fields, rng.randint(1, 4)):
            body[field] = rng.choice(shapes)
        response = await _flags(client, body, version=rng.choice([None, 1, 2, 4]))
        assert response.status_code in (200, 400), (body, response.text)
        if response.status_code == 400:
            assert set(response.json()) == {"type", "code", "detail", "attr"}


async def test_browser_origin_gets_cors_headers(client, kit):
    await create_flag(kit, "web")
    origin = {"Origin": "https://shop.example"}
    preflight = await client.options("/flags/?v=2", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    response = await client.post("/decide/?v=3", json={"token": kit.project_api_key, "distinct_id": "x"}, headers=origin)
    assert response.status_code == 200 and response.json()["featureFlags"] == {"web": True}
    assert response.headers["access-control-allow-credentials"] == "true"
    denied = await client.post("/flags/?v=2", json={"distinct_id": "x"}, headers=origin)
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://shop.example"
    plain = await client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "x"})
    assert "access-control-allow-origin" not in plain.headers


async def test_documented_routes_answer_like_the_fast_path(app, client, kit):
    """Without `SDKFastPath` the FastAPI routes serve `/flags` and `/decide` with the same answers."""
    import httpx

    from experiments_service.app import create_app
    from experiments_service.flags.sdk import SDKFastPath

    await create_flag(kit, "routed", filters={**boolean_filters(100), "payloads": {"true": '{"a": 1}'}})
    plain_app = create_app(app.state.settings)
    plain_app.user_middleware = [m for m in plain_app.user_middleware if m.cls is not SDKFastPath]
    volatile = ("requestId", "evaluatedAt")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app), base_url="http://testserver") as routed:
            for url, body in [
                ("/flags/?v=2", {"token": kit.project_api_key, "distinct_id": "u"}),
                ("/flags/?v=1", {"token": kit.project_api_key, "distinct_id": "u"}),
                ("/decide/?v=3", {"api_key": kit.project_api_key, "distinct_id": "u"}),
                ("/flags/?v=2", {"token": "nope", "distinct_id": "u"}),
                ("/flags/?v=2", {"token": kit.project_api_key}),
            ]:
                fast, slow = await client.post(url, json=body), await routed.post(url, json=body)
                assert slow.status_code == fast.status_code, (url, body)
                fast_body, slow_body = fast.json(), slow.json()
                assert {k: v for k, v in slow_body.items() if k not in volatile} == {
                    k: v for k, v in fast_body.items() if k not in volatile
                }
                assert set(slow_body) == set(fast_body)
            assert (await routed.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "u"})).json()[
                "flags"
            ]["routed"]["enabled"] is True
    finally:
        await plain_app.state.db.dispose()
