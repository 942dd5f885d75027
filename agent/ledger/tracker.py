"""Notices departures, so the ledger can show SoC at departure against the owner's target.

Pure: fed VehicleState snapshots, it reports the moment the car leaves P after being parked,
with the SoC then and the target of the scheduled departure closest to that moment.
"""

from __future__ import annotations

from agent.bus.state import VehicleState
from agent.governor.policy import Policy
from agent.ledger.store import DepartureRow

MATCH_WINDOW_S = 3 * 3600.0  # a drive this close to a scheduled departure is that departure


class DepartureTracker:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._parked = False
        self._soc: float | None = None

    def observe(self, state: VehicleState, now: float, wall: float) -> DepartureRow | None:
        gear = state.value("gear", now, self.policy.max_input_age_s)
        soc = state.value("soc_percent", now, self.policy.max_input_age_s)
        if isinstance(soc, float) and not isinstance(soc, bool):
            self._soc = soc
        if gear is None:
            return None  # unknown says nothing about leaving
        if gear == "P":
            self._parked = True
            return None
        left, self._parked = self._parked, False
        if not left or self._soc is None:
            return None
        target = self._scheduled_target(wall)
        return None if target is None else DepartureRow(wall, self._soc, target)

    def _scheduled_target(self, wall: float) -> float | None:
        # The next departure after (wall - window) is the one we may be leaving for, early or late.
        nd = self.policy.next_departure(wall - MATCH_WINDOW_S)
        if nd is None or abs(nd[0] - wall) > MATCH_WINDOW_S:
            return None
        return nd[1]
