"""A week of lent compute, written through the real Ledger API: nights on the charger, a few
battery jobs in the evening, a preempted job at each departure, and the departures themselves."""

from __future__ import annotations

import datetime as dt

from agent.governor.policy import Period, Tariff, Window
from agent.ledger.store import Ledger
from agent.runner.runner import Outcome

TZ = "Europe/Berlin"
TARIFF = Tariff(currency="EUR", default_per_kwh=0.32,
                periods=(Period(Window(0, 6 * 60), 0.18), Period(Window(17 * 60, 20 * 60), 0.45)))
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()  # Mon 09:00


def fill_week(ledger: Ledger, now: float = NOW) -> list[tuple[float, float, float, float]]:
    """Write the week; returns every job as (start, end, energy_wh, grid_fraction)."""
    from zoneinfo import ZoneInfo

    jobs: list[tuple[float, float, float, float]] = []
    real_record = ledger.record_job

    def record_job(job_id: str, outcome: Outcome, start: float, end: float, wh: float,
                   grid_fraction: float = 1.0, credits: float = 0.0) -> None:
        jobs.append((start, end, wh, grid_fraction))
        real_record(job_id, outcome, start, end, wh, grid_fraction=grid_fraction, credits=credits)

    zone = ZoneInfo(TZ)
    today = dt.datetime.fromtimestamp(now, zone).date()
    for back in range(7, 0, -1):
        evening = dt.datetime.combine(today - dt.timedelta(days=back), dt.time(19, 0), zone).timestamp()
        # Two battery jobs in the evening, before the car is plugged in.
        for i in range(2):
            t0 = evening + i * 1200
            record_job(f"d{back}-bat{i}", Outcome.DONE, t0, t0 + 900, 60.0, grid_fraction=0.0,
                              credits=0.05)
        # Jobs all night on the charger, 22:00 to 06:00, 40 minutes each at 600 W.
        t = evening + 3 * 3600
        n = 0
        while t + 2400 <= evening + 11 * 3600:
            record_job(f"d{back}-n{n}", Outcome.DONE, t, t + 2400, 400.0, grid_fraction=1.0,
                              credits=0.25)
            t += 2700
            n += 1
        # One handed back when the departure drain began, and one failure on one night.
        record_job(f"d{back}-late", Outcome.PREEMPTED, t, t + 300, 50.0, credits=0.25)
        if back == 3:
            record_job(f"d{back}-bad", Outcome.FAILED, t - 600, t - 500, 2.0)
        depart = evening + 12.5 * 3600  # 07:30
        ledger.record_departure(depart, 79.0 if back == 2 else 81.5, 80.0)
    return jobs
