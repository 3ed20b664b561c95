"""Fixtures for the experiment tests."""

from typing import Any

import pytest

from tests.experiments.helpers import action
from tests.factories import create_experiment


@pytest.fixture
async def running(kit) -> dict[str, Any]:
    """A launched experiment on a fresh flag."""
    experiment = await create_experiment(kit, feature_flag_key="running-flag")
    return await action(kit, experiment["id"], "launch")
