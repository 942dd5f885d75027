"""The ledger's inlet for the service: runner outcomes and vehicle states in, ledger rows out.

Owns the glue rules: which share of a job's energy came from the grid (the charger's surplus
over the base load at the moment it ended), and when a departure happened (DepartureTracker).
A job's rows are not written here: `entry` prepares them and the fleet link commits them in
the transaction that stores the job's result (see agent/ledger/store.py). Errors are counted
and logged, never raised into the runner's thread; a disk that refuses a write is reported to
`on_storage_error` (the storage monitor), which says so once, not once per write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.bus.state import VehicleState
from agent.clock import Clock
from agent.governor.policy import Policy
from agent.ledger.store import Ledger, LedgerEntry, LedgerError, grid_share
from agent.ledger.tracker import DepartureTracker
from agent.runner.power import PowerModel
from agent.runner.runner import JobOutcome
from agent.storage import StorageError

log = logging.getLogger(__name__)


class LedgerSink:
    def __init__(self, ledger: Ledger, clock: Clock, policy: Policy,
                 power_model: PowerModel | None = None,
                 on_storage_error: Callable[[StorageError], None] | None = None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.policy = policy
        self.model = power_model or PowerModel()
        self.tracker = DepartureTracker(policy)
        self.errors = 0
        self.on_storage_error = on_storage_error
        self._lock = threading.Lock()

    def entry(self, o: JobOutcome, state: VehicleState, credits: float = 0.0) -> LedgerEntry | None:
        """One job's rows, for the transaction that stores its result; `state` is the car as
        the job ended (for the grid/battery split). None (counted, logged) for bad figures."""
        try:
            return self.ledger.entry(o, self.clock, grid_fraction=self._share(state), credits=credits)
        except LedgerError as e:
            self._failed(e, f"cannot record job {o.job_id}")
            return None

    def outcome(self, o: JobOutcome, state: VehicleState, credits: float = 0.0) -> None:
        """Record one job in a transaction of its own."""
        entry = self.entry(o, state, credits)
        if entry is None:
            return
        try:
            self.ledger.commit(entry)
        except StorageError as e:
            self._failed(e, f"cannot record job {o.job_id}")

    def _share(self, state: VehicleState) -> float:
        now = self.clock.monotonic()
        charger = state.value("charging_power_kw", now, self.policy.max_input_age_s)
        cable = state.value("charge_cable", now, self.policy.max_input_age_s)
        charger_w = float(charger) * 1000.0 if cable is True and isinstance(charger, (int, float)) \
            and not isinstance(charger, bool) else None
        return grid_share(charger_w, self.policy.vehicle.base_load_w, self.model.watts_per_core)

    def _failed(self, e: LedgerError | StorageError, what: str) -> None:
        with self._lock:
            self.errors += 1
        if isinstance(e, StorageError) and self.on_storage_error is not None:
            self.on_storage_error(e)  # the monitor says it once
        else:
            log.warning("ledger: %s: %s", what, e)

    def observe(self, state: VehicleState) -> None:
        """Feed every state snapshot; records the SoC at each scheduled departure."""
        row = self.tracker.observe(state, self.clock.monotonic(), self.clock.time())
        if row is None:
            return
        try:
            self.ledger.record_departure(row.wall, row.soc_percent, row.target_percent)
        except (LedgerError, StorageError) as e:
            self._failed(e, "cannot record a departure")

    def energy_today(self) -> tuple[float, float]:
        """(Wh, cost) so far today, for Inputs.energy_today_wh and Inputs.cost_today."""
        try:
            return self.ledger.energy_today(self.clock.time())
        except LedgerError as e:
            self._failed(e, "cannot read today's energy")
            return 0.0, 0.0
