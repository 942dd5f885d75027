"""Scenario reports: a markdown page with the verdict of every expectation, and a PNG timeline.

The plot has four panels on simulated local time: SoC with the departure target, charger and
compute power, pack and compute temperatures with their maxima, and the mode the fleet saw
with the reasons the car gave. Owns nothing but the presentation of a `hil.runner.Result`.
"""

from __future__ import annotations

from pathlib import Path

from hil.runner import ACK_TIMEOUT_S, Result

REPORT_DIR = Path(__file__).parent / "reports"
MODES = {"OFF": 0, "STANDBY": 1, "RUN": 2}


def write(result: Result, out_dir: Path = REPORT_DIR) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    sc = result.scenario
    stem = sc.name + ("-short" if sc.short else "")
    png = out_dir / f"{stem}.png"
    md = out_dir / f"{stem}.md"
    plot(result, png)
    md.write_text(markdown(result, png.name))
    result.report_md, result.report_png = md, png
    return md, png


def markdown(r: Result, png_name: str) -> str:
    sc = r.scenario
    lines = [f"# {sc.title}", "",
             (f"Scenario `{sc.path.name}`{' (shortened)' if sc.short else ''}: {sc.clock_text(0)} to "
              f"{sc.clock_text(sc.duration_s)} local ({sc.timezone}), vehicle profile `{sc.profile}`, "
              f"{r.steps} steps of {sc.step_s} s simulated in {r.real_s:.1f} s; the agent was late for "
              f"{r.acks_missed} of them (time moved on after {ACK_TIMEOUT_S} s)."), "",
             f"**Verdict: {'PASS' if r.ok else 'FAIL'}**", "", "| expectation | verdict | detail |", "|---|---|---|"]
    for v in r.verdicts:
        lines.append(f"| {v.name} | {'pass' if v.ok else '**FAIL**'} | {v.detail} |")
    lines += ["", f"![timeline]({png_name})", "", "## Timeline", ""]
    lines += [f"- {entry}" for entry in r.log] or ["- (no events)"]
    j = r.jobs
    lines += ["", "## Fleet", "",
              (f"{j.get('submitted', 0)} tasks submitted, {j.get('ok', 0)} done, {j.get('pending', 0)} waiting for a car; "
               f"{j.get('jobs_sent', 0)} jobs sent, {j.get('results', 0)} results received, "
               f"{j.get('duplicates_dropped', 0)} duplicate deliveries dropped, {j.get('handed_back', 0)} handed back."),
              "", "## Energy", "",
              f"Compute energy: {r.meter_wh:.4f} Wh on the simulator's meter, {r.ledger_wh:.4f} Wh in the owner's ledger.",
              (f"Departure SoC: {'-' if r.departure_soc is None else f'{r.departure_soc:.1f} %'}; "
               f"the charger alone: {'-' if r.baseline_soc is None else f'{r.baseline_soc:.1f} %'}."), ""]
    if r.violations:
        lines += ["## Violations", ""] + [f"- {v}" for v in r.violations] + [""]
    return "\n".join(lines)


def plot(r: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    sc = r.scenario
    every = max(1, len(r.samples) // 4000)
    s = r.samples[::every]
    x = [sc.local(p.t) for p in s]
    fig, ax = plt.subplots(4, 1, figsize=(11, 9), sharex=True, constrained_layout=True)
    fig.suptitle(f"{sc.title}: {'PASS' if r.ok else 'FAIL'}")
    ax[0].plot(x, [p.soc for p in s], color="tab:green", label="SoC")
    if sc.departure_s is not None:
        ax[0].axhline(_target(r), color="tab:green", ls="--", lw=0.8, label="departure target")
    ax[0].set_ylabel("SoC %")
    ax[0].legend(loc="lower right")
    ax[1].plot(x, [p.charger_kw for p in s], color="tab:blue", label="charger kW")
    ax[1].set_ylabel("charger kW")
    c = ax[1].twinx()
    c.plot(x, [p.compute_w for p in s], color="tab:red", lw=0.8, label="compute W")
    c.set_ylabel("compute W", color="tab:red")
    ax[2].plot(x, [p.pack_c for p in s], color="tab:purple", label="pack")
    ax[2].plot(x, [p.compute_c for p in s], color="tab:orange", label="compute module")
    ax[2].set_ylabel("°C")
    ax[2].legend(loc="upper right")
    ax[3].step(x, [MODES.get(p.mode, -1) for p in s], where="post", color="black")
    ax[3].set_yticks([-1, 0, 1, 2], ["?", "OFF", "STANDBY", "RUN"])
    last: tuple[str, ...] | None = None
    shown = 0
    for p, when in zip(s, x):
        if p.reasons != last and shown < 14:
            last = p.reasons
            if p.reasons:
                ax[3].annotate(",".join(p.reasons[:2]), (mdates.date2num(when), MODES.get(p.mode, -1)),
                               fontsize=6, rotation=25, xytext=(2, 4), textcoords="offset points")
                shown += 1
    ax[3].set_ylabel("mode")
    ax[3].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=x[0].tzinfo if x else None))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _target(r: Result) -> float:
    from agent.governor.policy import Policy

    return Policy.from_mapping(r.scenario.policy).departure.target_soc_percent
