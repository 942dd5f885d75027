"""`fleetnode calibrate`: measure watts per busy core, so a power budget becomes a core count.

Owns the energy meters (Linux RAPL, the battery's power reading) and the load generator. The
procedure: for k = 0..cores, keep k processes spinning, read the meter's average power, then
fit P = idle + watts_per_core * k (agent/runner/power.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.synchronize
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from agent.runner.power import PowerModel, fit


class MeterError(Exception):
    """No usable energy meter, or one that gave a reading that cannot be right."""


class Meter(Protocol):
    name: str

    def measure(self, seconds: float) -> float:
        """Average power in watts over the next `seconds`."""
        ...


def _read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise MeterError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return int(text)
    except ValueError as e:
        raise MeterError(f"{path} holds {text[:40]!r}, not an integer") from e


class RaplMeter:
    """Intel/AMD RAPL package energy counter (µJ), wrapping at max_energy_range_uj."""

    name = "rapl"

    def __init__(self, zone: Path = Path("/sys/class/powercap/intel-rapl:0")) -> None:
        self.counter = zone / "energy_uj"
        self.range_uj = _read_int(zone / "max_energy_range_uj")
        _read_int(self.counter)  # readable at all? (root-only on many kernels)

    def measure(self, seconds: float) -> float:
        e0, t0 = _read_int(self.counter), time.monotonic()
        time.sleep(seconds)
        e1, t1 = _read_int(self.counter), time.monotonic()
        delta = e1 - e0 if e1 >= e0 else e1 + self.range_uj - e0
        return delta / 1e6 / (t1 - t0)


class BatteryMeter:
    """A laptop battery's power draw while discharging (power_now, or current_now x voltage_now)."""

    name = "battery"

    def __init__(self, supply: Path | None = None, sample_s: float = 0.25) -> None:
        self.supply = supply or self._find()
        self.sample_s = sample_s
        self._power()  # fails early if unreadable or not discharging

    @staticmethod
    def _find(root: Path = Path("/sys/class/power_supply")) -> Path:
        for p in sorted(root.glob("BAT*")):
            return p
        raise MeterError(f"no battery under {root}")

    def _power(self) -> float:
        status = (self.supply / "status").read_text().strip() if (self.supply / "status").exists() else ""
        if status != "Discharging":
            raise MeterError(f"{self.supply.name} is {status or 'in an unknown state'}: unplug AC to "
                             f"calibrate on the battery")
        if (self.supply / "power_now").exists():
            return _read_int(self.supply / "power_now") / 1e6
        return _read_int(self.supply / "current_now") * _read_int(self.supply / "voltage_now") / 1e12

    def measure(self, seconds: float) -> float:
        readings = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            readings.append(self._power())
            time.sleep(self.sample_s)
        return sum(readings) / len(readings) if readings else self._power()


def find_meter(kind: str = "auto") -> Meter:
    """The first usable meter of `kind` (auto, rapl, battery); MeterError says why none is."""
    errors = []
    table: dict[str, list[type[RaplMeter | BatteryMeter]]] = {
        "rapl": [RaplMeter], "battery": [BatteryMeter], "auto": [RaplMeter, BatteryMeter]}
    if kind not in table:
        raise MeterError(f"unknown meter {kind!r} (use {', '.join(table)})")
    for make in table[kind]:
        try:
            return make()
        except (MeterError, OSError) as e:
            errors.append(f"{make.name}: {e}")
    raise MeterError("no energy meter is readable (" + "; ".join(errors) + ")")


def _spin(stop: mp.synchronize.Event) -> None:  # pragma: no cover - runs in a child process
    x = 0
    while not stop.is_set():
        for _ in range(20000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


@contextlib.contextmanager
def busy(cores: int) -> Iterator[list[int]]:
    """Keep `cores` processes spinning for the duration; yields their pids."""
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    procs = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores)]
    for p in procs:
        p.start()
    try:
        yield [p.pid for p in procs if p.pid is not None]
    finally:
        stop.set()
        for p in procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)


def calibrate(meter: Meter, cores: int, seconds: float = 5.0, settle_s: float = 1.0,
              report: object = None) -> tuple[PowerModel, list[tuple[int, float]]]:
    """Measure at 0..cores busy cores and fit the power model. Returns (model, samples)."""
    samples: list[tuple[int, float]] = []
    for k in range(cores + 1):
        with busy(k):
            time.sleep(settle_s)
            w = meter.measure(seconds)
        if not (0.0 <= w < 100_000.0):
            raise MeterError(f"{meter.name} read {w:.1f} W with {k} busy cores: not a plausible power")
        samples.append((k, w))
        if callable(report):
            report(k, w)
    return fit(samples, cores), samples
