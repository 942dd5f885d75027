"""Fixtures of the end-to-end tests: the simulated car on the shim's bus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.bench import CarOnBus
from tests.e2e.state_rig import car_on_bus_args


@pytest.fixture
def car(tmp_path: Path) -> Iterator[CarOnBus]:
    """A parked car on the charger, 70 % SoC, its frames on a real shim's pty."""
    profile, state = car_on_bus_args()
    c = CarOnBus(profile, state, workdir=tmp_path)
    c.start()
    try:
        yield c
    finally:
        c.stop()
