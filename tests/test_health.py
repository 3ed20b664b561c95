"""The app boots on each database and renders errors in the reference envelope."""


async def test_unknown_route_is_reference_404(client):
    response = await client.get("/api/projects/1/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
