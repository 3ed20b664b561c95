"""Headless Debian Chromium through playwright, with every request off this machine refused."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
]  # fmt: skip
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def require_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")


@contextmanager
def browser_page(refused: list[str]) -> Iterator[object]:
    """A fresh page; requests to any host but loopback are aborted and listed in `refused`."""
    from playwright.sync_api import sync_playwright

    require_chromium()

    def route(route, request) -> None:
        if urlsplit(request.url).hostname in LOOPBACK or request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.route("**/*", route)
            yield context.new_page()
        finally:
            browser.close()
