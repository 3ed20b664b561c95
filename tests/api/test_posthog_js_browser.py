"""A frontend app through posthog-js (npm, 1.449) in headless Chromium, served from another local
origin: remote config, flag evaluation and capture all succeed against the service, and the
exposure and conversion show in the experiment's results."""

import json
import shutil
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.api.browser import browser_page
from tests.flags.live_server import bootstrap, free_port, running_server

POSTHOG_JS = "posthog-js@1.449"
NPM_TIMEOUT_SECONDS = 180
DISTINCT_ID = "browser-user-1"
FLAG_KEY = "checkout-flow"

PAGE = """<!doctype html><html><head><title>shop</title><script src="/posthog.js"></script></head><body>
<p id="variant">loading</p>
<script>
window.result = new Promise((resolve) => {
  posthog.init(%(token)s, {
    api_host: %(api)s, opt_out_useragent_filter: true, autocapture: false, capture_pageview: false,
    capture_pageleave: false, disable_session_recording: true, persistence: "memory", request_batching: false,
    bootstrap: {distinctID: %(distinct_id)s},
  });
  posthog.onFeatureFlags(() => {
    const variant = posthog.getFeatureFlag(%(flag)s);
    document.getElementById("variant").textContent = String(variant);
    posthog.capture("purchase", {amount: 12});
    resolve(variant);
  });
});
</script></body></html>"""


@pytest.fixture(scope="session")
def posthog_js(tmp_path_factory):
    """posthog-js's browser bundle, installed from npm into a temporary directory."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    target = tmp_path_factory.mktemp("npm")
    try:
        completed = subprocess.run(
            [npm, "install", POSTHOG_JS, "--prefix", str(target), "--no-audit", "--no-fund", "--no-save",
             "--ignore-scripts", "--fetch-retries=1"],
            capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("the npm registry did not answer in time")
    bundle = target / "node_modules" / "posthog-js" / "dist" / "array.full.no-external.js"
    if completed.returncode != 0 or not bundle.exists():
        if any(word in completed.stderr for word in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "network")):
            pytest.skip(f"the npm registry is unreachable: {completed.stderr[-300:]}")
        pytest.fail(completed.stdout + completed.stderr)
    return bundle


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve_site(directory) -> tuple[ThreadingHTTPServer, str]:
    """The frontend app's own origin (another port, another host name than the service)."""
    handler = partial(_QuietHandler, directory=str(directory))
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{port}"


def _experiment(api: httpx.Client) -> dict:
    created = api.post("/experiments/", json={
        "name": "Checkout flow", "feature_flag_key": FLAG_KEY, "allow_unknown_events": True,
        "metrics": [{"kind": "ExperimentMetric", "metric_type": "mean", "uuid": "purchases",
                     "source": {"kind": "EventsNode", "event": "purchase"}}],
        "exposure_criteria": {"filterTestAccounts": False},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    launched = api.post(f"/experiments/{created.json()['id']}/launch/")
    assert launched.status_code == 200, launched.text
    return launched.json()


def _wait_for_counts(api: httpx.Client, experiment_id: int, variant: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        results = api.get(f"/experiments/{experiment_id}/results/").json()
        metric = results["results"][0]
        entries = [metric["baseline"], *metric["variant_results"]] if metric.get("baseline") else []
        counted = {entry["key"]: (entry["number_of_samples"], entry["sum"]) for entry in entries}
        if results["exposures"].get(variant) == 1 and counted.get(variant) == (1, 1):
            return results
        assert time.monotonic() < deadline, results
        time.sleep(0.5)


def test_posthog_js_evaluates_the_flag_and_captures_into_results(posthog_js, database_urls, db_name, tmp_path):
    database_url = database_urls[db_name]
    issued = bootstrap(database_url, f"posthog-js-{db_name}")
    token = issued["project_api_key"]
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(posthog_js, site / "posthog.js")
    refused: list[str] = []
    with running_server(database_url) as server:
        api = httpx.Client(
            base_url=f"{server.url}/api/projects/{issued['project_id']}",
            headers={"Authorization": f"Bearer {issued['personal_api_key']}"},
        )
        experiment = _experiment(api)
        (site / "index.html").write_text(PAGE % {
            "token": json.dumps(token), "api": json.dumps(server.url), "distinct_id": json.dumps(DISTINCT_ID),
            "flag": json.dumps(FLAG_KEY),
        })  # fmt: skip
        site_server, site_url = _serve_site(site)
        sdk_requests: list[tuple[str, int | str]] = []
        try:
            with browser_page(refused) as page:
                page.on("requestfailed", lambda request: sdk_requests.append((request.url, request.failure or "failed")))
                page.on(
                    "response",
                    lambda response: sdk_requests.append((response.url, response.status))
                    if response.url.startswith(server.url) else None,
                )  # fmt: skip
                try:
                    page.goto(f"{site_url}/index.html")
                    variant = page.evaluate("window.result")
                    page.wait_for_function("document.getElementById('variant').textContent !== 'loading'")
                    counted = _wait_for_counts(api, experiment["id"], variant)
                finally:
                    page.screenshot(path=str(tmp_path / "posthog-js.png"))
        finally:
            site_server.shutdown()
        expected = httpx.post(f"{server.url}/flags/?v=2", json={"token": token, "distinct_id": DISTINCT_ID}).json()

    assert variant == expected["flags"][FLAG_KEY]["variant"] and variant in ("control", "test")
    assert {key: n for key, n in counted["exposures"].items() if n} == {variant: 1}
    paths = [httpx.URL(url).path for url, _ in sdk_requests]
    assert f"/array/{token}/config" in paths and "/flags/" in paths
    assert any(path.startswith(("/i/v0/e", "/e/", "/batch")) for path in paths), paths
    assert [(url, status) for url, status in sdk_requests if not isinstance(status, int) or status >= 400] == []
    assert refused == []
    print(f"posthog-js ({db_name}): variant {variant!r} (= /flags), exposures {counted['exposures']}, "
          f"SDK requests {[(httpx.URL(url).path, status) for url, status in sdk_requests]}")
