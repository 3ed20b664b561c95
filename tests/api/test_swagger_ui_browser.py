"""A person's way through Swagger UI in a real browser: Authorize with the personal key, then
"Try it out" to create an experiment, launch it and list experiments. Nothing leaves the machine."""

import json

from tests.api.browser import browser_page
from tests.flags.live_server import bootstrap, running_server


def _operation(page, operation_id: str, tag: str):
    block = page.locator(f"#operations-{tag}-{operation_id}")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    return block


def _execute(block, expected_status: int) -> dict:
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip().startswith(str(expected_status)), status.inner_text()
    return json.loads(block.locator(".live-responses-table .response-col_description pre").first.inner_text())


def _fill(block, name: str, value) -> None:
    block.locator(f'tr[data-param-name="{name}"] input').fill(str(value))


def test_swagger_ui_authorize_and_try_it_out(database_urls, db_name, tmp_path):
    database_url = database_urls[db_name]
    issued = bootstrap(database_url, f"swagger-{db_name}")
    project_id = issued["project_id"]
    refused: list[str] = []
    with running_server(database_url) as server, browser_page(refused) as page:
        try:
            page.goto(f"{server.url}/docs")
            page.get_by_role("button", name="Authorize").first.click()
            dialog = page.locator(".modal-ux")
            dialog.locator("input").first.fill(issued["personal_api_key"])
            dialog.locator("button.authorize").click()
            dialog.locator("button", has_text="Logout").wait_for()  # Swagger UI now holds the key
            dialog.locator("button.btn-done").click()

            create = _operation(page, "experiments_create_experiment", "experiments")
            _fill(create, "project_id", project_id)
            created = _execute(create, 201)
            assert created["name"] == "Checkout button colour" and created["status"] == "draft"

            launch = _operation(page, "experiments_launch", "experiments")
            _fill(launch, "project_id", project_id)
            _fill(launch, "experiment_id", created["id"])
            launched = _execute(launch, 200)
            assert launched["status"] == "running" and launched["start_date"]

            listing = _operation(page, "experiments_list_experiments", "experiments")
            _fill(listing, "project_id", project_id)
            listed = _execute(listing, 200)
            assert [(item["id"], item["status"]) for item in listed["results"]] == [(created["id"], "running")]
            assert "running" in listing.locator(".live-responses-table").inner_text()
        finally:
            page.screenshot(path=str(tmp_path / "swagger-ui.png"), full_page=True)
    assert refused == []
