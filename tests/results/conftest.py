"""Fixtures for the results tests."""

from datetime import datetime

import pytest

from tests.results.helpers import START


@pytest.fixture
def start() -> datetime:
    return START
