"""Adaptive replication and credits: the rule, its parameters, no I/O (docs/fleet.md).

Results are byte-exact within a compute class, so replicas are compared for equality. A task
is settled when `quorum` results of one class agree byte for byte. The rule:

- a car's reputation is its count of consecutive validated results; one result that disagrees
  with an agreed quorum sets it to zero;
- a result from a car whose reputation is below `trust_after` is always replicated (quorum 2);
- a result from a trusted car is accepted alone, except for a random `spot_check` share that is
  replicated all the same (and that validates or convicts the car);
- a car caught with a wrong result has its recent results that were accepted alone re-run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    trust_after: int = 100  # consecutive validated results before a car's results stand alone
    spot_check: float = 0.1  # share of a trusted car's results replicated anyway
    rerun_window: int = 1000  # how many of a convicted car's lone results are re-run
    max_attempts_per_replica: int = 10  # a task that takes more attempts than this fails

    def __post_init__(self) -> None:
        if self.trust_after < 1 or not 0.0 <= self.spot_check <= 1.0 or self.rerun_window < 0:
            raise ValueError("trust_after >= 1, 0 <= spot_check <= 1 and rerun_window >= 0")

    def trusted(self, reputation: int) -> bool:
        return reputation >= self.trust_after

    def stands_alone(self, reputation: int, draw: float) -> bool:
        """Whether one result from a car of this reputation settles an adaptive task; `draw`
        is uniform in [0, 1) (the spot check)."""
        return self.trusted(reputation) and draw >= self.spot_check


@dataclass(frozen=True)
class CreditRate:
    """Credits per result: a floor for the work, plus the energy the result took at the
    reference power. The run time is the median of the agreeing replicas' reports, capped at
    the job's limit, so one car cannot inflate it."""

    per_result: float = 0.001
    per_wh: float = 0.01
    reference_w: float = 500.0

    def energy_wh(self, run_s: Sequence[float | None], max_run_s: float) -> float:
        known = [min(max(0.0, r), max_run_s) for r in run_s if r is not None and math.isfinite(r)]
        if not known:
            return 0.0
        return statistics.median(known) * self.reference_w / 3600.0

    def credits(self, energy_wh: float) -> float:
        # Micro-credit resolution: the car's ledger and the service add the same numbers.
        return round(self.per_result + energy_wh * self.per_wh, 6)
