"""The ledger's inlet for the service: runner outcomes and vehicle states in, ledger rows out.

Owns the glue rules: which share of a job's energy came from the grid (the charger's surplus
over the base load at the moment it ended), and when a departure happened (DepartureTracker).
Errors writing the ledger are counted and logged, never raised into the runner's thread.
"""

from __future__ import annotations

import logging
import threading

from agent.bus.state import VehicleState
from agent.clock import Clock
from agent.governor.policy import Policy
from agent.ledger.store import Ledger, LedgerError, grid_share
from agent.ledger.tracker import DepartureTracker
from agent.runner.power import PowerModel
from agent.runner.runner import JobOutcome

log = logging.getLogger(__name__)


class LedgerSink:
    def __init__(self, ledger: Ledger, clock: Clock, policy: Policy,
                 power_model: PowerModel | None = None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.policy = policy
        self.model = power_model or PowerModel()
        self.tracker = DepartureTracker(policy)
        self.errors = 0
        self._lock = threading.Lock()

    def outcome(self, o: JobOutcome, state: VehicleState, credits: float = 0.0) -> None:
        """Record one job; `state` is the car as the job ended (for the grid/battery split)."""
        now = self.clock.monotonic()
        charger = state.value("charging_power_kw", now, self.policy.max_input_age_s)
        cable = state.value("charge_cable", now, self.policy.max_input_age_s)
        charger_w = float(charger) * 1000.0 if cable is True and isinstance(charger, (int, float)) \
            and not isinstance(charger, bool) else None
        share = grid_share(charger_w, self.policy.vehicle.base_load_w, self.model.watts_per_core)
        try:
            self.ledger.record(o, self.clock, grid_fraction=share, credits=credits)
        except LedgerError:
            with self._lock:
                self.errors += 1
            log.exception("ledger: cannot record job %s", o.job_id)

    def observe(self, state: VehicleState) -> None:
        """Feed every state snapshot; records the SoC at each scheduled departure."""
        row = self.tracker.observe(state, self.clock.monotonic(), self.clock.time())
        if row is None:
            return
        try:
            self.ledger.record_departure(row.wall, row.soc_percent, row.target_percent)
        except LedgerError:
            with self._lock:
                self.errors += 1
            log.exception("ledger: cannot record a departure")

    def energy_today(self) -> tuple[float, float]:
        """(Wh, cost) so far today, for Inputs.energy_today_wh and Inputs.cost_today."""
        try:
            return self.ledger.energy_today(self.clock.time())
        except LedgerError:
            with self._lock:
                self.errors += 1
            return 0.0, 0.0
