"""The owner's view of the ledger: today and the last seven days, as text and as a chart.

Reads only; owns the wording and the chart's layout. matplotlib is imported lazily (Agg), so
the agent runs without it and only `--plot` needs it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from agent.ledger.store import Ledger, Summary

WEEK_S = 7 * 86400.0


@dataclass(frozen=True)
class Report:
    wall: float
    today: Summary
    week: Summary
    days: tuple[tuple[dt.date, Summary], ...]  # the last seven local days, oldest first


def build(ledger: Ledger, wall: float) -> Report:
    today_start = ledger.day_start(wall)
    days = []
    for back in range(6, -1, -1):
        start = ledger.day_start(today_start - back * 86400 + 3600)  # +1 h: safe across DST
        end = ledger.day_end(start)
        days.append((dt.datetime.fromtimestamp(start, ledger.zone).date(), ledger.summary(start, end)))
    week_start = ledger.day_start(today_start - 6 * 86400 + 3600)
    return Report(wall, ledger.today(wall), ledger.summary(week_start, wall + 1), tuple(days))


def _outcomes(s: Summary) -> str:
    order = ("done", "preempted", "failed", "expired")
    parts = [f"{s.outcomes[k]} {k}" for k in order if s.outcomes.get(k)]
    return ", ".join(parts) or "none"


def render_text(report: Report, ledger: Ledger, currency: str = "EUR") -> str:
    local = dt.datetime.fromtimestamp(report.wall, ledger.zone)
    t, w = report.today, report.week
    rows = [
        ("hours lent", f"{t.hours_lent:.1f} h", f"{w.hours_lent:.1f} h"),
        ("energy", f"{t.energy_wh / 1000:.2f} kWh", f"{w.energy_wh / 1000:.2f} kWh"),
        ("  from the grid", f"{t.grid_wh / 1000:.2f} kWh", f"{w.grid_wh / 1000:.2f} kWh"),
        ("  from the battery", f"{t.battery_wh / 1000:.2f} kWh", f"{w.battery_wh / 1000:.2f} kWh"),
        (f"cost ({currency})", f"{t.cost:.2f}", f"{w.cost:.2f}"),
        ("credits claimed", f"{t.credits:.2f}", f"{w.credits:.2f}"),
        ("credits granted", f"{t.granted:.6f}", f"{w.granted:.6f}"),
        ("  verified results", f"{t.grants}", f"{w.grants}"),
    ]
    out = [f"fleetnode ledger {ledger.path}",
           f"as of {local:%a %d %b %Y %H:%M} ({ledger.zone.key})", "",
           f"{'':22}{'today':>16}  {'last 7 days':>16}"]
    out += [f"{name:22}{a:>16}  {b:>16}" for name, a, b in rows]
    out += [f"{'jobs today':22}{_outcomes(t)}", f"{'jobs, last 7 days':22}{_outcomes(w)}"]
    out += ["", "per day:"]
    for day, s in report.days:
        out.append(f"  {day:%a %d %b}  {s.hours_lent:5.1f} h  {s.energy_wh / 1000:6.2f} kWh  "
                   f"cost {s.cost:6.2f}  earned {s.credits:6.2f}")
    out += ["", "SoC at departure vs target (last 7 days):"]
    if not w.departures:
        out.append("  no departures recorded")
    for d in w.departures:
        when = dt.datetime.fromtimestamp(d.wall, ledger.zone)
        verdict = "met" if d.met else f"MISSED by {d.target_percent - d.soc_percent:.1f} %"
        out.append(f"  {when:%a %d %b %H:%M}  {d.soc_percent:5.1f} % / {d.target_percent:5.1f} %  {verdict}")
    return "\n".join(out) + "\n"


def plot(report: Report, ledger: Ledger, path: str | Path, currency: str = "EUR") -> Path:
    """A three-panel PNG: energy per hour (grid vs battery), cost vs earnings per day, SoC at
    departure vs target. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    zone = ledger.zone
    start = report.week.start
    hours = ledger.hourly(start, report.wall + 1)
    fig, (ax_e, ax_d, ax_s) = plt.subplots(3, 1, figsize=(11, 10), constrained_layout=True)
    w = report.week
    fig.suptitle(f"fleetnode: {w.hours_lent:.1f} h lent, {w.energy_wh / 1000:.2f} kWh, "
                 f"cost {w.cost:.2f} {currency}, earned {w.credits:.2f} credits (last 7 days)",
                 fontsize=13)

    x = [dt.datetime.fromtimestamp(h.hour, zone) for h in hours]
    width = 1 / 24 * 0.9
    grid = [h.grid_wh / 1000 for h in hours]
    batt = [h.battery_wh / 1000 for h in hours]
    ax_e.bar(x, grid, width=width, align="edge", color="#3b7dd8", label="from the grid")
    ax_e.bar(x, batt, width=width, align="edge", bottom=grid, color="#e8912d", label="from the battery")
    ax_e.set_title("Energy lent per hour")
    ax_e.set_ylabel("kWh")
    ax_e.set_xlim(dt.datetime.fromtimestamp(start, zone), dt.datetime.fromtimestamp(report.wall, zone))
    ax_e.xaxis.set_major_formatter(
        mdates.DateFormatter("%a %d", tz=zone))  # type: ignore[no-untyped-call]
    ax_e.xaxis.set_major_locator(mdates.DayLocator(tz=zone))  # type: ignore[no-untyped-call]
    top = max([g + b for g, b in zip(grid, batt)] + [0.01])
    ax_e.set_ylim(0, top * 1.35)  # headroom for the legend
    ax_e.legend(loc="upper right", ncols=2)
    ax_e.grid(axis="y", alpha=0.3)
    if not hours:
        ax_e.text(0.5, 0.5, "no compute lent in these days", transform=ax_e.transAxes, ha="center")

    labels = [f"{day:%a %d}" for day, _ in report.days]
    idx = list(range(len(labels)))
    ax_d.bar([i - 0.2 for i in idx], [s.cost for _, s in report.days], width=0.4, color="#c0504d",
             label=f"cost ({currency})")
    ax_d.bar([i + 0.2 for i in idx], [s.credits for _, s in report.days], width=0.4, color="#4f9a5a",
             label="earnings (credits)")
    ax_d.set_xticks(idx, labels)
    ax_d.set_title("Cost under the tariff vs earnings, per day")
    ax_d.set_ylim(0, max([s.cost for _, s in report.days] + [s.credits for _, s in report.days]
                         + [0.01]) * 1.3)
    ax_d.legend(loc="upper right", ncols=2)
    ax_d.grid(axis="y", alpha=0.3)

    deps = w.departures
    ax_s.set_title("SoC at departure vs target")
    ax_s.set_ylabel("state of charge (%)")
    if deps:
        low = min(min(d.soc_percent, d.target_percent) for d in deps)
        ax_s.set_ylim(max(0.0, low - 20), 102)
        when = [dt.datetime.fromtimestamp(d.wall, zone) for d in deps]
        ax_s.scatter(when, [d.target_percent for d in deps], marker="_", s=400, color="black",
                     label="target", zorder=3)
        ax_s.scatter(when, [d.soc_percent for d in deps], s=60, zorder=4, label="at departure",
                     color=["#4f9a5a" if d.met else "#c0504d" for d in deps])
        for t, d in zip(when, deps):
            ax_s.annotate(f"{d.soc_percent:.1f} %", (t, d.soc_percent), textcoords="offset points",
                          xytext=(8, 4))
        ax_s.set_xlim(dt.datetime.fromtimestamp(start, zone), dt.datetime.fromtimestamp(report.wall, zone))
        ax_s.xaxis.set_major_formatter(
            mdates.DateFormatter("%a %d %H:%M", tz=zone))  # type: ignore[no-untyped-call]
        ax_s.legend(loc="lower left", ncols=2)
    else:
        ax_s.text(0.5, 0.5, "no departures recorded", transform=ax_s.transAxes, ha="center")
    ax_s.grid(alpha=0.3)

    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
