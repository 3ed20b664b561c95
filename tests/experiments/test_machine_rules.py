"""The state machine is the rule book: every lifecycle route reaches it, nothing else sets a status."""

import ast
import re
import uuid
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from transitions.core import Event

import experiments_service
from experiments_service.experiments.lifecycle import MACHINE
from experiments_service.experiments.router import router as experiments_router
from experiments_service.models import ExperimentStatus

SOURCE = Path(experiments_service.__file__).parent
ACTION_PATH = re.compile(r"^/api/projects/\{project_id\}/experiments/\{experiment_id:int\}/(\w+)/$")
# Modules allowed to assign a `.status`: the machine's model, and the results repository (the
# statuses of recalculation jobs and of their rows, never of an experiment).
STATUS_WRITERS = ("experiments/lifecycle.py", "results/repository/")


@pytest.fixture
def fired(monkeypatch) -> list[str]:
    """The triggers the machine really runs (not `may_*` checks)."""
    names: list[str] = []
    original = Event.trigger

    def recording(self, model, *args, **kwargs):
        names.append(self.name)
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(Event, "trigger", recording)
    return names


async def _experiment(kit, **fields) -> dict:
    body = {"name": "Rules", "feature_flag_key": f"rules-{uuid.uuid4().hex[:10]}", **fields}
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _post(kit, experiment_id: int, name: str, body: dict | None = None) -> dict:
    response = await kit.client.post(
        f"{kit.base}/experiments/{experiment_id}/{name}/", json=body or {}, headers=kit.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _action_routes() -> set[str]:
    """The experiments router's POST actions on one experiment (the lifecycle routes)."""
    return {
        match.group(1)
        for route in experiments_router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods and (match := ACTION_PATH.match(route.path))
    }


class TestEveryLifecycleRouteReachesTheMachine:
    def test_every_action_route_is_a_machine_trigger(self):
        assert _action_routes() == set(MACHINE.events)

    async def test_each_action_fires_its_trigger(self, kit, fired):
        experiment = await _experiment(kit)
        steps = [
            ("launch", None, ExperimentStatus.RUNNING),
            ("pause", None, ExperimentStatus.PAUSED),
            ("resume", None, ExperimentStatus.RUNNING),
            ("end", None, ExperimentStatus.STOPPED),
            ("archive", None, ExperimentStatus.STOPPED),
            ("unarchive", None, ExperimentStatus.STOPPED),
            ("ship_variant", {"variant_key": "test"}, ExperimentStatus.STOPPED),
            ("reset", None, ExperimentStatus.DRAFT),
        ]
        assert {name for name, _, _ in steps} == _action_routes()
        for name, body, status in steps:
            fired.clear()
            result = await _post(kit, experiment["id"], name, body)
            assert fired == [name]
            assert result["status"] == status

    async def test_patched_dates_fire_launch_end_and_reset(self, kit, fired):
        experiment = await _experiment(kit)
        url = f"{kit.base}/experiments/{experiment['id']}/"
        for body, trigger, status in (
            ({"start_date": "2026-01-01T00:00:00Z"}, "launch", "running"),
            ({"end_date": "2026-02-01T00:00:00Z"}, "end", "stopped"),
            ({"start_date": None}, "reset", "draft"),
        ):
            fired.clear()
            response = await kit.client.patch(url, json=body, headers=kit.headers)
            assert response.status_code == 200, response.text
            assert (fired, response.json()["status"]) == ([trigger], status)

    async def test_end_date_on_a_draft_moves_nothing(self, kit, fired):
        experiment = await _experiment(kit)
        response = await kit.client.patch(
            f"{kit.base}/experiments/{experiment['id']}/", json={"end_date": "2026-02-01T00:00:00Z"}, headers=kit.headers
        )
        assert response.status_code == 200, response.text
        assert (fired, response.json()["status"], response.json()["end_date"]) == ([], "draft", "2026-02-01T00:00:00Z")

    async def test_archiving_an_archived_running_experiment_says_already_archived(self, kit):
        experiment = await _experiment(kit)
        await _post(kit, experiment["id"], "launch")
        patched = await kit.client.patch(
            f"{kit.base}/experiments/{experiment['id']}/", json={"archived": True}, headers=kit.headers
        )
        assert patched.status_code == 200, patched.text
        response = await kit.client.post(f"{kit.base}/experiments/{experiment['id']}/archive/", headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["detail"] == "Experiment is already archived."


def _status_assignments(tree: ast.AST) -> list[int]:
    """Lines that assign `<x>.status`, call `setattr(<x>, "status", ...)` or build a row with `status=`."""
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        lines += [node.lineno for target in targets if isinstance(target, ast.Attribute) and target.attr == "status"]
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name == "setattr" and len(node.args) > 1 and getattr(node.args[1], "value", None) == "status":
                lines.append(node.lineno)
            if name in ("Experiment", "values") and any(keyword.arg == "status" for keyword in node.keywords):
                lines.append(node.lineno)
    return lines


def test_nothing_but_the_machine_assigns_a_status():
    offenders = {
        str(path.relative_to(SOURCE)): lines
        for path in sorted(SOURCE.rglob("*.py"))
        if not str(path.relative_to(SOURCE)).startswith(STATUS_WRITERS)
        and (lines := _status_assignments(ast.parse(path.read_text())))
    }
    assert offenders == {}
    assert _status_assignments(ast.parse((SOURCE / "experiments/lifecycle.py").read_text()))


def test_the_scan_finds_assignments():
    assert _status_assignments(ast.parse("row.status = 'x'\nsetattr(r, 'status', 1)\nExperiment(status='draft')\n")) == [
        1, 2, 3,
    ]
