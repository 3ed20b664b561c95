"""Structured logs: the JSON access line with the request id, request ids on the service's own
lines, masked keys, and the console format."""

import io
import json
import logging

import httpx
import pytest

from experiments_service.app import create_app
from experiments_service.observability import logs
from experiments_service.settings import Settings


@pytest.fixture
def log_stream(monkeypatch):
    """Logging configured as a served process has it, into a buffer; put back afterwards."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(logs, "_access_logger", None)

    def configure(**settings):
        stream = io.StringIO()
        logs.configure_logging(Settings(**{"log_format": "json", **settings}), stream=stream)
        return stream

    return configure


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_access_line_is_json_with_request_id_route_and_project(kit, log_stream):
    stream = log_stream()
    response = await kit.client.get(f"{kit.base}/experiments/", headers={**kit.headers, "X-Request-ID": "req-42"})
    assert response.status_code == 200
    [line] = [line for line in lines(stream) if line.get("request_id") == "req-42"]
    assert line["event"] == "request" and line["level"] == "info"
    assert line["method"] == "GET"
    assert line["route"] == "/api/projects/{project_id}/experiments/"
    assert line["status"] == 200
    assert line["project_id"] == kit.project_id
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["timestamp"].endswith("Z")


async def test_sdk_requests_log_the_project_of_their_key(kit, log_stream):
    stream = log_stream()
    response = await kit.client.post(
        "/batch/",
        json={"api_key": kit.project_api_key, "batch": [{"event": "x", "distinct_id": "a"}, {"event": "no id"}]},
        headers={"X-Request-ID": "capture-1"},
    )
    assert response.status_code == 200
    mine = [line for line in lines(stream) if line.get("request_id") == "capture-1"]
    # The service's own message during the request carries the request id too.
    assert [line["event"] for line in mine] == [
        f"capture dropped event 1 of 2 for project {kit.project_id}: no distinct_id",
        "request",
    ]
    assert mine[0]["logger"] == "experiments_service.events.service"
    assert mine[1]["route"] == "/batch/" and mine[1]["project_id"] == kit.project_id and mine[1]["status"] == 200
    assert kit.project_api_key not in stream.getvalue()


async def test_keys_are_masked(log_stream):
    stream = log_stream()
    secret = "phx_" + "s3cr3t" * 6
    logging.getLogger("experiments_service.test").warning("key %s refused", secret)
    [line] = lines(stream)
    assert line["event"] == f"key {secret[:4]}...{secret[-4:]} refused"
    assert secret not in stream.getvalue()


async def test_level_and_access_log_follow_settings(kit, log_stream):
    stream = log_stream(log_level="WARNING")
    logging.getLogger("experiments_service.test").info("not shown")
    await kit.client.get("/version")
    assert stream.getvalue() == ""
    stream = log_stream(access_log=False)
    await kit.client.get("/version", headers={"X-Request-ID": "quiet"})
    assert "quiet" not in stream.getvalue()


async def test_probes_are_logged_only_when_they_fail(kit, log_stream):
    stream = log_stream()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await kit.client.get(path, headers={"X-Request-ID": "probe"})).status_code == 200
    assert "probe" not in stream.getvalue()


async def test_console_format_is_one_readable_line(kit, log_stream):
    stream = log_stream(log_format="console")
    await kit.client.get("/version", headers={"X-Request-ID": "tty-1"})
    [line] = [line for line in stream.getvalue().splitlines() if "tty-1" in line]
    assert "request" in line and "route=/version" in line and "status=200" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_an_unhandled_error_is_logged_with_its_request_id(database_urls, db_name, log_stream):
    stream = log_stream()
    app = create_app(Settings(database_url=database_urls[db_name], run_worker=False))

    @app.get("/broken/", include_in_schema=False)
    async def broken() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/broken", headers={"X-Request-ID": "oops-1"})
    finally:
        await app.state.db.dispose()
    assert response.status_code == 500
    mine = [line for line in lines(stream) if line.get("request_id") == "oops-1"]
    assert mine[0]["event"] == "unhandled error" and "RuntimeError: boom" in mine[0]["exception"]
    assert mine[1]["event"] == "request" and mine[1]["status"] == 500 and mine[1]["route"] == "/broken/"
