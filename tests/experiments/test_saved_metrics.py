"""`/experiment_saved_metrics/`: CRUD, query validation, the stable query uuid, tags and metadata."""

import uuid

from sqlalchemy import func, select

from experiments_service.models import ExperimentSavedMetric, ExperimentToSavedMetric
from tests.factories import load, make_experiment, make_flag, make_kit

MEAN_QUERY = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "purchase"}}


def metrics_url(kit) -> str:
    return f"{kit.base}/experiment_saved_metrics/"


async def create_metric(client, kit, name: str = "Purchases", **fields) -> dict:
    response = await client.post(
        metrics_url(kit), json={"name": name, "query": MEAN_QUERY, **fields}, headers=kit.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def metric_count(app, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(ExperimentSavedMetric).where(ExperimentSavedMetric.project_id == project_id)
        )


class TestCreate:
    async def test_create_assigns_a_query_uuid(self, client, kit, app):
        response = await client.post(
            metrics_url(kit),
            json={
                "name": "Purchases",
                "description": "Mean purchases per user",
                "query": MEAN_QUERY,
                "tags": ["revenue", " Core ", "REVENUE"],
                "metadata": {"owner": "growth"},
            },
            headers=kit.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert list(body) == [
            "id", "name", "description", "query", "created_by", "created_at", "updated_at", "tags", "metadata"
        ]  # fmt: skip
        assert str(uuid.UUID(body["query"]["uuid"])) == body["query"]["uuid"]
        assert {k: v for k, v in body["query"].items() if k != "uuid"} == MEAN_QUERY
        assert body["tags"] == ["revenue", "core"]
        assert body["metadata"] == {"owner": "growth"}
        assert body["created_by"]["id"] == kit.user_id
        stored = await load(app, ExperimentSavedMetric, body["id"])
        assert stored.query == body["query"]
        assert stored.project_id == kit.project_id

    async def test_given_uuid_is_kept(self, client, kit):
        given = str(uuid.uuid4())
        body = await create_metric(client, kit, query={**MEAN_QUERY, "uuid": given})
        assert body["query"]["uuid"] == given

    async def test_every_metric_type_is_accepted(self, client, kit):
        events = {"kind": "EventsNode", "event": "signup"}
        queries = [
            {"kind": "ExperimentMetric", "metric_type": "funnel", "series": [events]},
            {"kind": "ExperimentMetric", "metric_type": "ratio", "numerator": events, "denominator": events},
            {
                "kind": "ExperimentMetric", "metric_type": "retention", "start_event": events,
                "completion_event": events, "retention_window_start": 0, "retention_window_end": 7,
                "retention_window_unit": "day",
            },
        ]  # fmt: skip
        for query in queries:
            body = await create_metric(client, kit, query=query)
            assert body["query"]["metric_type"] == query["metric_type"]

    async def test_invalid_queries_are_rejected_with_the_reference_messages(self, client, kit, app):
        cases = [
            ({}, "Query is required to create a saved metric"),
            (None, "Query is required to create a saved metric"),
            ({"not-kind": "x"}, "Metric query kind must be 'ExperimentMetric'"),
            ({"kind": "TrendsQuery"}, "Metric query kind must be 'ExperimentMetric'"),
            (
                {"kind": "ExperimentTrendsQuery", "count_query": {}},
                "Legacy metric kind 'ExperimentTrendsQuery' is no longer supported for new saved metrics. "
                "Use 'ExperimentMetric' instead.",
            ),
            ({"kind": "ExperimentMetric"}, "ExperimentMetric requires a metric_type"),
            (
                {**MEAN_QUERY, "metric_type": "invalid"},
                "ExperimentMetric metric_type must be 'mean', 'funnel', 'ratio', or 'retention'",
            ),
        ]
        for query, message in cases:
            response = await client.post(metrics_url(kit), json={"name": "m", "query": query}, headers=kit.headers)
            assert response.status_code == 400, query
            assert response.json() == {"type": "validation_error", "code": "invalid_input", "detail": message,
                                       "attr": "query"}  # fmt: skip
        assert await metric_count(app, kit.project_id) == 0

    async def test_shape_errors_name_the_missing_part(self, client, kit, app):
        response = await client.post(
            metrics_url(kit), json={"name": "m", "query": {"kind": "ExperimentMetric", "metric_type": "mean"}},
            headers=kit.headers,
        )  # fmt: skip
        assert response.status_code == 400
        assert response.json()["attr"] == "query"
        assert "source" in response.json()["detail"]
        funnel = {"kind": "ExperimentMetric", "metric_type": "funnel", "series": []}
        response = await client.post(metrics_url(kit), json={"name": "m", "query": funnel}, headers=kit.headers)
        assert response.status_code == 400
        assert "funnel metrics require at least one step" in response.json()["detail"]
        assert await metric_count(app, kit.project_id) == 0

    async def test_wrong_types_are_400(self, client, kit, app):
        for body, attr in (
            ({"name": "m", "query": "mean"}, "query"),
            ({"query": MEAN_QUERY}, "name"),
            ({"name": "m" * 401, "query": MEAN_QUERY}, "name"),
            ({"name": "m", "query": MEAN_QUERY, "tags": "a"}, "tags"),
            ({"name": "m", "query": MEAN_QUERY, "tags": ["t" * 256]}, "tags__0"),
            ({"name": "m", "query": MEAN_QUERY, "metadata": [1]}, "metadata"),
        ):
            response = await client.post(metrics_url(kit), json=body, headers=kit.headers)
            assert response.status_code == 400, body
            assert response.json()["attr"] == attr
        assert await metric_count(app, kit.project_id) == 0


class TestReadUpdateDelete:
    async def test_list_retrieve_and_isolation(self, client, kit, app):
        first = await create_metric(client, kit, name="first")
        second = await create_metric(client, kit, name="second")
        other = await make_kit(app, client)
        foreign = await create_metric(client, other, name="foreign")
        listed = (await client.get(metrics_url(kit), headers=kit.headers)).json()
        assert listed["count"] == 2
        assert [m["id"] for m in listed["results"]] == [second["id"], first["id"]]
        assert (await client.get(f"{metrics_url(kit)}{first['id']}/", headers=kit.headers)).json() == first
        assert (await client.get(f"{metrics_url(kit)}{foreign['id']}/", headers=kit.headers)).status_code == 404

    async def test_patch_query_keeps_its_uuid(self, client, kit, app):
        metric = await create_metric(client, kit)
        new_query = {**MEAN_QUERY, "source": {"kind": "EventsNode", "event": "checkout"}}
        response = await client.patch(
            f"{metrics_url(kit)}{metric['id']}/", json={"query": new_query, "name": "Checkouts", "tags": ["x"]},
            headers=kit.headers,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["query"]["uuid"] == metric["query"]["uuid"]
        assert body["query"]["source"]["event"] == "checkout"
        assert body["name"] == "Checkouts"
        assert body["tags"] == ["x"]
        assert body["description"] == metric["description"]
        stored = await load(app, ExperimentSavedMetric, metric["id"])
        assert stored.query == body["query"]

    async def test_patch_cannot_change_the_uuid_and_writes_nothing(self, client, kit, app):
        metric = await create_metric(client, kit)
        url = f"{metrics_url(kit)}{metric['id']}/"
        changed_uuid = {**MEAN_QUERY, "uuid": str(uuid.uuid4())}
        for body, message in (
            ({"name": "new", "query": changed_uuid}, "Saved metric UUID cannot be changed"),
            ({"name": "new", "query": {"kind": "ExperimentMetric"}}, "ExperimentMetric requires a metric_type"),
        ):
            response = await client.patch(url, json=body, headers=kit.headers)
            assert response.status_code == 400
            assert response.json()["detail"] == message
        null_query = await client.patch(url, json={"query": None}, headers=kit.headers)
        assert null_query.status_code == 400
        assert null_query.json()["code"] == "null"
        stored = await load(app, ExperimentSavedMetric, metric["id"])
        assert (stored.name, stored.query) == (metric["name"], metric["query"])

    async def test_put_needs_the_name_and_keeps_the_uuid(self, client, kit, app):
        metric = await create_metric(client, kit)
        url = f"{metrics_url(kit)}{metric['id']}/"
        missing_name = await client.put(url, json={"query": MEAN_QUERY}, headers=kit.headers)
        assert (missing_name.status_code, missing_name.json()["attr"]) == (400, "name")
        replaced = await client.put(url, json={"name": "Replaced", "query": MEAN_QUERY}, headers=kit.headers)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["query"]["uuid"] == metric["query"]["uuid"]
        assert (await load(app, ExperimentSavedMetric, metric["id"])).name == "Replaced"
        null_query = await client.put(url, json={"name": "x", "query": None}, headers=kit.headers)
        assert null_query.json()["detail"] == "Query is required to create a saved metric"
        assert (await load(app, ExperimentSavedMetric, metric["id"])).name == "Replaced"

    async def test_delete_removes_experiment_links(self, client, kit, app):
        metric = await create_metric(client, kit)
        flag = await make_flag(kit, "metric-flag")
        experiment = await make_experiment(app, kit.project_id, flag.id)
        async with app.state.db.transaction() as session:
            session.add(ExperimentToSavedMetric(experiment_id=experiment.id, saved_metric_id=metric["id"],
                                                metadata_={"type": "primary"}))  # fmt: skip
        response = await client.delete(f"{metrics_url(kit)}{metric['id']}/", headers=kit.headers)
        assert response.status_code == 204
        assert await load(app, ExperimentSavedMetric, metric["id"]) is None
        async with app.state.db.sessionmaker() as session:
            links = await session.scalar(
                select(func.count()).select_from(ExperimentToSavedMetric).where(
                    ExperimentToSavedMetric.experiment_id == experiment.id
                )
            )
        assert links == 0
        assert (await client.get(f"{metrics_url(kit)}{metric['id']}/", headers=kit.headers)).status_code == 404

    async def test_write_needs_experiment_write(self, client, kit, app):
        metric = await create_metric(client, kit)
        read_headers, _ = await kit.key(["experiment:read"])
        assert (await client.get(metrics_url(kit), headers=read_headers)).status_code == 200
        response = await client.patch(f"{metrics_url(kit)}{metric['id']}/", json={"name": "x"}, headers=read_headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:write'"
        assert (await load(app, ExperimentSavedMetric, metric["id"])).name == metric["name"]


class TestThroughExperiments:
    async def test_linked_metric_is_rendered_in_the_experiment_and_its_ordering(self, client, kit, app):
        metric = await create_metric(client, kit, name="Shared purchases")
        created = await client.post(
            f"{kit.base}/experiments/",
            json={"name": "Uses saved", "feature_flag_key": "uses-saved",
                  "saved_metrics_ids": [{"id": metric["id"], "metadata": {"type": "secondary"}}]},
            headers=kit.headers,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        experiment = created.json()
        [link] = experiment["saved_metrics"]
        assert (link["saved_metric"], link["name"], link["metadata"]) == (
            metric["id"], "Shared purchases", {"type": "secondary"}
        )  # fmt: skip
        assert link["query"]["uuid"] == metric["query"]["uuid"]
        assert metric["query"]["uuid"] in experiment["secondary_metrics_ordered_uuids"]

        await client.patch(f"{metrics_url(kit)}{metric['id']}/", json={"name": "Renamed"}, headers=kit.headers)
        refreshed = (await client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert refreshed["saved_metrics"][0]["name"] == "Renamed"

        other = await make_kit(app, client)
        foreign = await client.post(
            f"{other.base}/experiments/",
            json={"name": "x", "feature_flag_key": "x", "saved_metrics_ids": [{"id": metric["id"]}]},
            headers=other.headers,
        )
        assert foreign.status_code == 400
        assert foreign.json()["detail"] == "Saved metric does not exist or does not belong to this project"
