"""Group types: listing, adding at the next free index, idempotence, the limit of five."""

from sqlalchemy import select

from experiments_service.models import FlagDefinitionsVersion, GroupTypeMapping


class TestGroupTypes:
    async def test_adds_next_free_index_and_lists(self, app, client, kit):
        url = f"{kit.base}/groups_types/"
        assert (await client.get(url, headers=kit.headers)).json() == []
        first = await client.post(url, json={"group_type": "organization"}, headers=kit.headers)
        assert first.status_code == 201
        assert first.json() == {"group_type": "organization", "group_type_index": 0, "name_singular": None, "name_plural": None}
        second = await client.post(url, json={"group_type": "instance", "name_plural": "instances"}, headers=kit.headers)
        assert second.json()["group_type_index"] == 1
        listed = (await client.get(url, headers=kit.headers)).json()
        assert [(row["group_type"], row["group_type_index"]) for row in listed] == [("organization", 0), ("instance", 1)]
        async with app.state.db.sessionmaker() as session:
            stored = (await session.execute(select(GroupTypeMapping).where(GroupTypeMapping.project_id == kit.project_id))).scalars().all()
            version = (await session.get(FlagDefinitionsVersion, kit.project_id)).version
        assert {row.group_type: row.group_type_index for row in stored} == {"organization": 0, "instance": 1}
        assert version == 2

    async def test_existing_type_is_idempotent(self, client, kit):
        url = f"{kit.base}/groups_types/"
        await client.post(url, json={"group_type": "company"}, headers=kit.headers)
        again = await client.post(url, json={"group_type": "company"}, headers=kit.headers)
        assert again.status_code == 200 and again.json()["group_type_index"] == 0
        assert len((await client.get(url, headers=kit.headers)).json()) == 1

    async def test_sixth_type_is_rejected(self, client, kit):
        url = f"{kit.base}/groups_types/"
        for name in ["a", "b", "c", "d", "e"]:
            assert (await client.post(url, json={"group_type": name}, headers=kit.headers)).status_code == 201
        response = await client.post(url, json={"group_type": "f"}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["attr"] == "group_type"
        assert len((await client.get(url, headers=kit.headers)).json()) == 5

    async def test_blank_type_and_scopes(self, client, kit):
        url = f"{kit.base}/groups_types/"
        blank = await client.post(url, json={"group_type": ""}, headers=kit.headers)
        assert blank.status_code == 400 and blank.json()["attr"] == "group_type"
        read_only, _ = await kit.key(["feature_flag:read"])
        assert (await client.get(url, headers=read_only)).status_code == 200
        assert (await client.post(url, json={"group_type": "x"}, headers=read_only)).status_code == 403
