"""The official posthog-python SDK: its own requests recorded at its HTTP session and replayed
against the app unchanged (body bytes, headers and path), and the SDK sending to a real server."""

import gzip
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import orjson
import pytest
import requests
from posthog import request as posthog_request
from posthog.client import Client

from tests.events.helpers import stored_events, stored_person
from tests.flags.live_server import running_server


class RecordingSession:
    """Stands in for the SDK's pooled `requests` session and keeps what it was asked to send."""

    def __init__(self):
        self.sent: list[tuple[str, bytes | str, dict[str, str]]] = []

    def post(self, url, data=None, headers=None, timeout=None, **_):
        self.sent.append((url, data, dict(headers or {})))
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"status": 1}'
        return response


@pytest.fixture
def sdk_requests(monkeypatch):
    recorder = RecordingSession()
    monkeypatch.setattr(posthog_request, "_session", recorder)
    return recorder


async def replay(client, recorded):
    responses = []
    for url, data, headers in recorded:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        responses.append(await client.post(path, content=data, headers=headers))
    return responses


@pytest.mark.parametrize("use_gzip", [False, True])
async def test_sdk_capture_set_and_flag_called_events(client, kit, app, sdk_requests, use_gzip):
    sdk = Client(
        kit.project_api_key, host="http://testserver", sync_mode=True, gzip=use_gzip, disable_geoip=True,
        enable_exception_autocapture=False,
    )
    moment = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    pageview_uuid = sdk.capture("$pageview", distinct_id="sdk-user", properties={"path": "/home"}, timestamp=moment)
    sdk.capture(
        "$feature_flag_called",
        distinct_id="sdk-user",
        properties={"$feature_flag": "new-checkout", "$feature_flag_response": "test"},
    )
    sdk.set(distinct_id="sdk-user", properties={"plan": "pro"})
    sdk.set_once(distinct_id="sdk-user", properties={"first_plan": "free"})
    sdk.set_once(distinct_id="sdk-user", properties={"first_plan": "pro"})
    sdk.shutdown()

    assert len(sdk_requests.sent) == 5
    url, body, headers = sdk_requests.sent[0]
    assert urlsplit(url).path == "/batch/"
    assert (headers.get("Content-Encoding") == "gzip") is use_gzip
    payload = orjson.loads(gzip.decompress(body) if use_gzip else body)
    assert {"api_key", "batch", "sent_at"} <= set(payload)
    assert payload["api_key"] == kit.project_api_key

    responses = await replay(client, sdk_requests.sent)
    assert [(response.status_code, response.json()) for response in responses] == [(200, {"status": 1})] * 5

    stored = await stored_events(app, kit.project_id)
    assert [row.event for row in stored] == ["$pageview", "$feature_flag_called", "$set", "$set_once", "$set_once"]
    pageview, flag_called = stored[0], stored[1]
    assert str(pageview.uuid) == pageview_uuid
    assert pageview.distinct_id == "sdk-user"
    assert pageview.properties["path"] == "/home"
    assert pageview.properties["$lib"] == "posthog-python"
    # The SDK stamps `sent_at` as it sends, so skew correction moves the event by only the
    # moments between recording and replay.
    assert abs(pageview.timestamp - moment) < timedelta(seconds=30)
    assert (flag_called.flag_key, flag_called.flag_response) == ("new-checkout", "test")
    person = await stored_person(app, kit.project_id, "sdk-user")
    assert person.properties == {"plan": "pro", "first_plan": "free"}


@pytest.mark.parametrize("use_gzip", [False, True])
async def test_sdk_batches_reach_a_real_server(kit, app, db_name, database_urls, use_gzip):
    with running_server(database_urls[db_name]) as server:
        sdk = Client(
            kit.project_api_key, host=server.url, gzip=use_gzip, disable_geoip=True, flush_at=50,
            enable_exception_autocapture=False,
        )
        uuids = [sdk.capture("$pageview", distinct_id=f"live-{index % 7}", properties={"n": index}) for index in range(120)]
        sdk.capture(
            "$feature_flag_called", distinct_id="live-0",
            properties={"$feature_flag": "live-flag", "$feature_flag_response": False},
        )
        sdk.set(distinct_id="live-0", properties={"plan": "team"})
        sdk.flush()
        sdk.shutdown()

    stored = await stored_events(app, kit.project_id)
    assert {str(row.uuid) for row in stored} >= set(uuids)
    assert len(stored) == 122
    [flag_called] = [row for row in stored if row.event == "$feature_flag_called"]
    assert (flag_called.flag_key, flag_called.flag_response) == ("live-flag", "false")
    assert (await stored_person(app, kit.project_id, "live-0")).properties == {"plan": "team"}
