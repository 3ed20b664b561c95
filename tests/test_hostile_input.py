"""Every class of hostile input, sent to every route family: never a 5xx, and a refused request
stores nothing (every project-scoped table keeps its row count).

Bounded: one request per (route, input) pair, about 20 ms each.
"""

import gzip
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from experiments_service.models.base import Base

BIG_ID = str(2**63)
MAX_URL = 60_000
# Raw JSON texts of values no handler expects.
VALUES = {
    "nul": '"a\\u0000b"',
    "surrogate": '"\\ud800"',
    "low-surrogate": '"x\\udfffy"',
    "depth-300": "[" * 300 + "]" * 300,
    "depth-990": "{\"a\":" * 990 + "1" + "}" * 990,
    "depth-10000": "[" * 10_000 + "]" * 10_000,
    "nan": "NaN",
    "infinity": "-Infinity",
    "int-2**63": BIG_ID,
    "int-2**64+1": str(2**64 + 1),
    "huge-string": '"' + "x" * 200_000 + '"',
}
# Bodies that are broken as a whole.
GZIP_BOMB = gzip.compress(b'{"a": "' + b"x" * (40 * 1024 * 1024) + b'"}')  # 40 MB inflated, 40 KB sent
BODIES = {
    "invalid-utf8": (b'{"name": "\xff\xfe\xfd", "key": "\xc3\x28"}', {}),
    "truncated": (b'{"name": "x", ', {}),
    "gzip-bomb": (GZIP_BOMB, {"Content-Encoding": "gzip"}),
    "gzip-garbage": (b"\x1f\x8b" + b"\x00" * 64, {"Content-Encoding": "gzip"}),
}


@dataclass(frozen=True)
class Route:
    """One route family: how to put a raw JSON value into an otherwise sensible request."""

    method: str
    path: str  # may hold {base}, {experiment}, {flag}, {token}, {value} (URL-encoded)
    body: str | None = None  # JSON text with {value}, {u} (unique), {token}

    def url(self, setup: dict, value: str) -> str:
        return self.path.format(value=quote(value, safe=""), **setup)

    def content(self, setup: dict, value: str) -> bytes | None:
        if self.body is None:
            return None
        return self.body.replace("{value}", value).replace("{u}", uuid.uuid4().hex[:10]).replace(
            "{token}", setup["token"]
        ).encode("utf-8", "surrogatepass")


ROUTES = {
    "experiment-create": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": "h-{u}", "parameters": {"x": {value}}}'),
    "experiment-name": Route("POST", "{base}/experiments/", '{"name": {value}, "feature_flag_key": "h-{u}"}'),
    "experiment-flag-key": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": {value}}'),
    "experiment-metrics": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": "h-{u}", "metrics": [{value}]}'),
    "experiment-stats": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": "h-{u}", "stats_config": {"bayesian": {"ci_level": {value}}}}'),
    "experiment-holdout-id": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": "h-{u}", "holdout_id": {value}}'),
    "experiment-saved-metrics": Route("POST", "{base}/experiments/", '{"name": "h", "feature_flag_key": "h-{u}", "saved_metrics_ids": [{"id": {value}}]}'),
    "experiment-patch": Route("PATCH", "{base}/experiments/{experiment}/", '{"filters": {"x": {value}}}'),
    "experiment-dates": Route("PATCH", "{base}/experiments/{experiment}/", '{"start_date": {value}}'),
    "experiment-action": Route("POST", "{base}/experiments/{experiment}/end/", '{"conclusion_comment": {value}}'),
    "experiment-big-id": Route("PATCH", "{base}/experiments/" + BIG_ID + "/", '{"name": {value}}'),
    "experiment-list": Route("GET", "{base}/experiments/?search={value}&limit={value}"),
    "project-big-id": Route("GET", "/api/projects/" + BIG_ID + "/experiments/?offset={value}"),
    "requires-flag-implementation": Route("GET", "{base}/experiments/requires_flag_implementation/?events={value}"),
    "results": Route("GET", "{base}/experiments/{experiment}/results/?metric_uuid={value}"),
    "timeseries": Route("POST", "{base}/experiments/{experiment}/recalculate_timeseries/", '{"metric": {"uuid": "m", "x": {value}}, "fingerprint": {value}}'),
    "timeseries-results": Route("GET", "{base}/experiments/{experiment}/timeseries_results/?metric_uuid=m&fingerprint={value}"),
    "saved-metric": Route("POST", "{base}/experiment_saved_metrics/", '{"name": "s-{u}", "query": {value}}'),
    "holdout": Route("POST", "{base}/experiment_holdouts/", '{"name": {value}, "filters": [{"rollout_percentage": 1}]}'),
    "flag-create": Route("POST", "{base}/feature_flags/", '{"key": "f-{u}", "filters": {"groups": [{"properties": [{"key": "k", "value": {value}}]}]}}'),
    "flag-regex": Route("POST", "{base}/feature_flags/", '{"key": "f-{u}", "filters": {"groups": [{"properties": [{"key": "k", "operator": "regex", "value": {value}}]}]}}'),
    "flag-patch": Route("PATCH", "{base}/feature_flags/{flag}/", '{"name": {value}}'),
    "flag-big-id": Route("GET", "{base}/feature_flags/" + BIG_ID + "/"),
    "group-types": Route("POST", "{base}/groups_types/", '{"group_type": {value}}'),
    "approval-policy": Route("POST", "{base}/approval_policies/", '{"action_key": "feature_flag.enable", "approver_config": {value}}'),
    "change-request-reason": Route("POST", "{base}/change_requests/" + str(uuid.uuid4()) + "/reject/", '{"reason": {value}}'),
    "activity-log": Route("GET", "{base}/activity_log/?scope={value}&item_id={value}"),
    "local-evaluation": Route("GET", "/api/feature_flag/local_evaluation/?token={value}"),
    "definitions": Route("GET", "/flags/definitions/?token={value}"),
    "flags-properties": Route("POST", "/flags/?v=2", '{"token": "{token}", "distinct_id": "u", "person_properties": {"k": {value}}}'),
    "flags-distinct-id": Route("POST", "/flags/?v=2", '{"token": "{token}", "distinct_id": {value}, "$anon_distinct_id": {value}}'),
    "flags-token": Route("POST", "/flags/?v=2", '{"token": {value}, "distinct_id": "u"}'),
    "decide": Route("POST", "/decide/?v=3", '{"token": "{token}", "distinct_id": "u", "groups": {"company": {value}}}'),
    "decide-token": Route("POST", "/decide/?v=4&token={value}", '{"distinct_id": "u"}'),
    "capture-properties": Route("POST", "/batch/", '{"api_key": "{token}", "batch": [{"event": "e", "distinct_id": "u", "properties": {"$feature_flag": {value}, "x": {value}}}]}'),
    "capture-fields": Route("POST", "/e/", '{"api_key": "{token}", "event": {value}, "distinct_id": {value}, "uuid": {value}, "timestamp": {value}}'),
    "capture-token": Route("POST", "/capture/", '{"api_key": {value}, "event": "e", "distinct_id": "u"}'),
    "capture-sent-at": Route("POST", "/i/v0/e/", '{"api_key": "{token}", "sent_at": {value}, "batch": [{"event": "e", "distinct_id": "u"}]}'),
}


PROJECT_TABLES = [table for table in Base.metadata.sorted_tables if "project_id" in table.c]


async def project_rows(app, project_id: int) -> dict[str, int]:
    """Row count of every project-scoped table, in one statement."""
    counts = select(*(
        select(func.count()).select_from(table).where(table.c.project_id == project_id).scalar_subquery().label(table.name)
        for table in PROJECT_TABLES
    ))
    async with app.state.db.sessionmaker() as session:
        return dict((await session.execute(counts)).one()._mapping)


@pytest.fixture
async def setup(kit) -> dict:
    experiment = await kit.client.post(f"{kit.base}/experiments/", json={"name": "Target", "feature_flag_key": "target"}, headers=kit.headers)
    flag = await kit.client.post(f"{kit.base}/feature_flags/", json={"key": "other", "filters": {"groups": [{"rollout_percentage": 50}]}}, headers=kit.headers)
    # Flags whose evaluation reads the database: a stored person property, a continuity override.
    person_flag = {"key": "pro", "filters": {"groups": [{"properties": [{"key": "plan", "type": "person", "value": "pro"}]}]}}
    sticky_flag = {"key": "sticky", "ensure_experience_continuity": True, "filters": {"groups": [{"rollout_percentage": 50}]}}
    for body in (person_flag, sticky_flag):
        assert (await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)).status_code == 201
    assert experiment.status_code == 201 and flag.status_code == 201
    return {"base": kit.base, "experiment": experiment.json()["id"], "flag": flag.json()["id"], "token": kit.project_api_key}


async def send_all(kit, setup: dict, cases: list[tuple[str, Route, bytes | None, dict, str]]) -> list[str]:
    """Send each case; return the failures (5xx, or rows stored by a refused request)."""
    failures = []
    before = await project_rows(kit.app, kit.project_id)
    for name, route, content, headers, url in cases:
        if len(url) > MAX_URL:
            continue  # servers refuse such request lines before the app sees them
        started = time.perf_counter()
        response = await kit.client.request(route.method, url, content=content, headers={**kit.headers, **headers})
        took = time.perf_counter() - started
        if took > 5:  # generous: the machine may be busy; a ReDoS or a bomb takes far longer
            failures.append(f"{name}: took {took:.1f} s")
        if response.status_code >= 500:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
            continue
        after = await project_rows(kit.app, kit.project_id)
        if response.status_code >= 400 and response.status_code != 409 and after != before:
            changed = {table: (before[table], after[table]) for table in after if after[table] != before[table]}
            failures.append(f"{name}: {response.status_code} but stored {changed}")
        before = after
    return failures


class TestHostileInput:
    @pytest.mark.parametrize("value_name", list(VALUES))
    async def test_bad_values_in_every_route_family(self, kit, setup, value_name):
        value = VALUES[value_name]
        cases = []
        for name, route in ROUTES.items():
            json_headers = {"Content-Type": "application/json"} if route.body is not None else {}
            cases.append((f"{name}/{value_name}", route, route.content(setup, value), json_headers, route.url(setup, value)))
        assert await send_all(kit, setup, cases) == []

    @pytest.mark.parametrize("body_name", list(BODIES))
    async def test_broken_bodies_on_every_route_family(self, kit, setup, body_name):
        content, headers = BODIES[body_name]
        cases = [
            (f"{name}/{body_name}", route, content, {"Content-Type": "application/json", **headers}, route.url(setup, "x"))
            for name, route in ROUTES.items()
            if route.body is not None
        ]
        assert await send_all(kit, setup, cases) == []

    @pytest.mark.parametrize("query", ["a%00b", "%ED%A0%80", "%FF%FE", BIG_ID, "-1", "1e400"])
    async def test_bad_query_and_path_values_on_every_read(self, kit, setup, query):
        cases = [
            (f"{name}/{query}", route, None, {}, route.path.format(value=query, **setup))
            for name, route in ROUTES.items()
            if route.body is None
        ]
        assert await send_all(kit, setup, cases) == []

    @pytest.mark.parametrize("segment", ["a%00b", "%ED%A0%80", BIG_ID, str(2**64) * 3, "-1", "1.5", "%FF"])
    @pytest.mark.parametrize(
        "collection",
        ["experiments", "feature_flags", "experiment_saved_metrics", "experiment_holdouts", "change_requests", "approval_policies"],
    )
    async def test_bad_ids_in_the_path(self, kit, setup, collection, segment):
        path = "{base}/" + collection + "/" + segment + "/"
        read, write = Route("GET", path), Route("PATCH", path, '{"name": "renamed"}')
        cases = [
            (f"{collection}/{segment}/GET", read, None, {}, read.url(setup, "")),
            (f"{collection}/{segment}/PATCH", write, write.content(setup, ""), {"Content-Type": "application/json"}, write.url(setup, "")),
        ]
        assert await send_all(kit, setup, cases) == []
