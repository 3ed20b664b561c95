"""Swagger UI and ReDoc come from the service itself (no CDN), so they work without internet."""

import re

import pytest


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
async def test_docs_pages_load_only_local_files(client, page, script):
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
    referenced = [url for pair in urls for url in pair if url]
    assert f"/docs/static/{script}" in referenced
    assert not [url for url in referenced if url.startswith(("http:", "https:", "//"))], referenced
    asset = await client.get(f"/docs/static/{script}")
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]
    assert len(asset.content) > 100_000


async def test_swagger_ui_keeps_the_key_across_reloads(client):
    html = (await client.get("/docs")).text
    assert '"persistAuthorization": true' in html
    assert (await client.get("/docs/static/swagger-ui.css")).status_code == 200
