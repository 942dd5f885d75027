"""Fixtures of the bus tests: the community Model 3 DBC (used in place) and its profile."""

from __future__ import annotations

import cantools
import pytest
from cantools.database.can import Database

from agent.bus.profile import VehicleProfile
from tests.bus.helpers import MODEL3_DBC


@pytest.fixture(scope="module")
def db() -> Database:
    loaded = cantools.database.load_file(str(MODEL3_DBC), strict=False)
    assert isinstance(loaded, Database)
    return loaded


@pytest.fixture(scope="module")
def tesla() -> VehicleProfile:
    return VehicleProfile.load("tesla-model3", dbc_path=MODEL3_DBC)
