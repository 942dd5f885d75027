"""The power model: a power budget in watts becomes a number of busy cores and a duty cycle.

    P(busy cores n) = idle_w + watts_per_core * n

`fleetnode calibrate` fits `watts_per_core` and `idle_w` from an energy meter (RAPL or the
battery's power reading); without a calibration the defaults describe a generic 8-core
automotive inference computer. The runner runs one job per busy core; when the budget does not
cover one full core it keeps one core busy for a fraction of the time (the duty cycle).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """$FLEETNODE_POWER_MODEL, else $XDG_CONFIG_HOME/fleetnode/power.json (~/.config/…)."""
    env = os.environ.get("FLEETNODE_POWER_MODEL")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fleetnode" / "power.json"


class PowerModelError(ValueError):
    """A power-model file or calibration that cannot be used."""


@dataclass(frozen=True)
class Allocation:
    threads: int  # jobs allowed to run at once
    duty: float  # fraction of wall time the runner keeps work going, 0..1

    @property
    def idle(self) -> bool:
        return self.threads == 0 or self.duty <= 0.0


@dataclass(frozen=True)
class PowerModel:
    watts_per_core: float = 15.0
    idle_w: float = 0.0  # drawn by the module whether or not we compute; not charged to jobs
    cores: int = 8
    min_duty: float = 0.05  # below this a duty cycle is not worth the wake-ups: run nothing

    def __post_init__(self) -> None:
        if not (math.isfinite(self.watts_per_core) and self.watts_per_core > 0):
            raise PowerModelError("watts_per_core must be a positive number")
        if not (math.isfinite(self.idle_w) and self.idle_w >= 0):
            raise PowerModelError("idle_w must be a number >= 0")
        if self.cores < 1:
            raise PowerModelError("cores must be >= 1")
        if not 0.0 <= self.min_duty < 1.0:
            raise PowerModelError("min_duty must be within [0, 1)")

    def allocate(self, budget_w: float) -> Allocation:
        """The most work that fits in budget_w: whole cores first, then a duty cycle on one."""
        if not math.isfinite(budget_w) or budget_w <= 0:
            return Allocation(0, 0.0)
        cores = budget_w / self.watts_per_core
        if cores >= 1.0:
            return Allocation(min(self.cores, int(cores)), 1.0)
        if cores < self.min_duty:
            return Allocation(0, 0.0)
        return Allocation(1, cores)

    def power_w(self, threads: int, duty: float = 1.0) -> float:
        """The compute power above idle for `threads` busy cores at `duty`."""
        return self.watts_per_core * max(0, threads) * max(0.0, min(1.0, duty))

    def job_energy_wh(self, busy_s: float) -> float:
        """Energy one job adds: one busy core for busy_s seconds."""
        return self.watts_per_core * max(0.0, busy_s) / 3600.0

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def default(cls) -> PowerModel:
        """The calibrated model when `fleetnode calibrate` wrote one, else generic figures.

        A damaged file must not keep the agent from starting: it is logged and ignored.
        """
        path = default_model_path()
        if path.exists():
            try:
                return cls.load(path)
            except PowerModelError as e:
                log.warning("ignoring the power model: %s", e)
        return cls(cores=os.cpu_count() or 1)

    @classmethod
    def load(cls, path: str | Path) -> PowerModel:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PowerModelError(f"cannot read power model {path}: {e}") from e
        if not isinstance(data, dict):
            raise PowerModelError(f"power model {path} must be a JSON object")
        try:
            return cls(
                watts_per_core=float(data.get("watts_per_core", cls.watts_per_core)),
                idle_w=float(data.get("idle_w", cls.idle_w)),
                cores=int(data.get("cores", os.cpu_count() or 1)),
                min_duty=float(data.get("min_duty", cls.min_duty)),
            )
        except (TypeError, ValueError) as e:
            raise PowerModelError(f"power model {path}: {e}") from e


def fit(samples: list[tuple[int, float]], cores: int) -> PowerModel:
    """Least-squares line through (busy cores, watts) samples: slope per core, intercept idle."""
    if len({n for n, _ in samples}) < 2:
        raise PowerModelError("calibration needs samples at two or more core counts")
    xs = [float(n) for n, _ in samples]
    ys = [w for _, w in samples]
    if not all(math.isfinite(y) for y in ys):
        raise PowerModelError("calibration samples must be finite")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if slope <= 0:
        raise PowerModelError(
            f"power did not rise with load (slope {slope:.2f} W/core): the meter does not see the CPU"
        )
    return PowerModel(watts_per_core=slope, idle_w=max(0.0, my - slope * mx), cores=cores)
