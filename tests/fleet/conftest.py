"""Helpers for the fleet tests: cars (FleetLinks) and fleet clients on the test's broker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink

RUN = {"mode": "RUN", "power_budget_w": 800.0, "reasons": []}
STANDBY = {"mode": "STANDBY", "power_budget_w": 0.0,
           "reasons": [{"code": "not_charging", "text": "the car is not charging"}]}
VEHICLE = {"soc_percent": 72.0, "charging_power_kw": 7.2, "gear": "P", "speed_kph": 0.0}


@pytest.fixture
def make_link(mosquitto: Broker, tmp_path: Path) -> Iterator[Callable[..., FleetLink]]:
    links: list[FleetLink] = []

    def make(car_id: str = "car1", start: bool = True, **kw: Any) -> FleetLink:
        kw.setdefault("outbox_path", tmp_path / f"{car_id}-outbox.sqlite")
        kw.setdefault("audit_path", tmp_path / f"{car_id}-audit.sqlite")
        link = FleetLink(car_id, mosquitto.host, mosquitto.port, **kw)
        links.append(link)
        if start:
            link.start()
            assert link.wait_connected(10), link.session.last_error
        return link

    yield make
    for link in links:
        with contextlib.suppress(Exception):  # a test may have closed or broken it already
            link.close()


@pytest.fixture
def make_client(mosquitto: Broker) -> Iterator[Callable[..., FleetClient]]:
    clients: list[FleetClient] = []

    def make(**kw: Any) -> FleetClient:
        c = FleetClient(mosquitto.host, mosquitto.port, **kw)
        clients.append(c)
        c.__enter__()
        assert c.wait_connected(10), c.session.last_error
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def run_car(link: FleetLink) -> None:
    link.apply_decision(RUN, VEHICLE)


def car_and_fleet(make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient],
                  car_id: str = "car1", fleet_kw: dict[str, Any] | None = None,
                  **car_kw: Any) -> tuple[FleetLink, FleetClient]:
    """One car taking jobs and a submitter "sub" that sees it available."""
    car = make_link(car_id, **car_kw)
    run_car(car)
    fleet = make_client(submitter="sub", **(fleet_kw or {}))
    assert fleet.wait_for(lambda c: car_id in {s.car for s in c.available()}, 10)
    return car, fleet
