"""The grid signal: the fleet publishes it retained per pool, every car of the pool gets it (the
ones that connect later too), a broken one is counted and ignored, and it expires."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from agent.clock import FakeClock
from agent.fleet import protocol as p
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.mqtt import publish_props
from agent.governor import GridSignal
from agent.runner.governed import InputsFeed

MakeLink = Callable[..., FleetLink]
MakeClient = Callable[..., FleetClient]


def test_grid_message_round_trips_and_rejects_nonsense() -> None:
    g = p.GridMessage(t=1_800_000_000.0, seq=3, valid_s=900, price_per_kwh=0.52, power_cap_w=200.0,
                      reason="demand_response")
    assert p.GridMessage.decode(g.encode()) == g
    for bad in (b'{"v":1,"t":1,"seq":1,"valid_s":0}', b'{"v":1,"t":1,"seq":1,"valid_s":60,"power_cap_w":-5}',
                b'{"v":1,"t":1,"seq":1,"valid_s":60,"boost":true}', b'{"v":2,"t":1,"seq":1,"valid_s":60}',
                b'{"v":1,"t":1,"seq":1,"valid_s":60,"reason":"a/b"}', b"\xff\xfe", b"[]"):
        with pytest.raises(p.ProtocolError):
            p.GridMessage.decode(bad)


def _collector() -> tuple[list[p.GridMessage], threading.Event, Callable[[p.GridMessage], None]]:
    got: list[p.GridMessage] = []
    seen = threading.Event()

    def on(g: p.GridMessage) -> None:
        got.append(g)
        seen.set()
    return got, seen, on


def test_every_car_of_the_pool_gets_the_retained_signal(make_link: MakeLink, make_client: MakeClient) -> None:
    fleet = make_client(submitter="grid-operator")
    assert fleet.wait_connected(10)
    fleet.publish_grid(p.GridMessage(t=1.0, seq=1, valid_s=600, power_cap_w=0.0, reason="demand_response"))
    got, seen, on = _collector()
    late = make_link("late-car", start=False)
    late.on_grid = on
    late.start()  # connects after the publish: only the retained message can reach it
    assert seen.wait(10)
    assert got[-1].power_cap_w == 0.0 and got[-1].reason == "demand_response"


def test_a_broken_grid_signal_is_counted_and_ignored(make_link: MakeLink, make_client: MakeClient) -> None:
    got, seen, on = _collector()
    car = make_link("car1", start=False)
    car.on_grid = on
    car.start()
    fleet = make_client(submitter="grid-operator")
    assert fleet.wait_connected(10)
    # Retained, so it reaches the car whenever its subscription is in place.
    fleet.session.publish(p.Topics.grid("default"), b'{"v":1,"power_cap_w":"lots"}', 1, True,
                          publish_props(content_type=p.CT_JSON))
    assert fleet.wait_for(lambda _: car.stats().get("grid_invalid") == 1, 10)
    assert not got
    fleet.publish_grid(p.GridMessage(t=2.0, seq=2, valid_s=60, price_per_kwh=0.4))
    assert seen.wait(10)
    assert [g.seq for g in got] == [2] and car.stats().get("grid_invalid") == 1


def test_the_governor_inputs_drop_a_signal_when_it_expires() -> None:
    clock = FakeClock()
    feed = InputsFeed(clock)
    feed.set_grid(GridSignal(t=clock.monotonic(), power_cap_w=100.0), valid_s=60.0)
    assert feed().grid is not None and feed().grid.power_cap_w == 100.0  # type: ignore[union-attr]
    clock.advance(61.0)
    assert feed().grid is None
