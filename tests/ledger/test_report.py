"""`fleetnode report`: the owner's text view and a chart a person can read."""

from __future__ import annotations

import argparse
import datetime as dt
import struct
from pathlib import Path

import pytest

from agent.ledger import Ledger
from agent.ledger import cli as report_cli
from agent.ledger.report import build, render_text
from tests.ledger.week import NOW, TARIFF, TZ, fill_week

POLICY = """
[policy]
timezone = "Europe/Berlin"
[tariff]
currency = "EUR"
default_per_kwh = 0.32
[[tariff.period]]
start = "00:00"
end = "06:00"
per_kwh = 0.18
[[tariff.period]]
start = "17:00"
end = "20:00"
per_kwh = 0.45
"""


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fleetnode")
    report_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return int(args.func(args))


JOBS: list[tuple[float, float, float, float]] = []


@pytest.fixture
def week(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, TARIFF, TZ) as led:
        JOBS[:] = fill_week(led)
    (tmp_path / "policy.toml").write_text(POLICY)
    return path


def overlap_wh(start: float, end: float, battery: bool = False) -> float:
    """Energy of the recorded jobs inside [start, end), shared out by time."""
    total = 0.0
    for a, b, wh, grid in JOBS:
        inside = max(0.0, min(b, end) - max(a, start))
        total += wh * inside / (b - a) * ((1 - grid) if battery else 1.0)
    return total


def test_week_totals_match_what_was_recorded(week: Path) -> None:
    with Ledger(week, TARIFF, TZ) as led:
        r = build(led, NOW)
        assert r.week.energy_wh == pytest.approx(overlap_wh(r.week.start, NOW))
        assert r.week.battery_wh == pytest.approx(overlap_wh(r.week.start, NOW, battery=True))
        assert r.week.start == dt.datetime(2026, 11, 17, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
        assert sum(s.energy_wh for _, s in r.days) == pytest.approx(r.week.energy_wh)
        assert r.week.outcomes["preempted"] == 7 and r.week.outcomes["failed"] == 1
        assert len(r.week.departures) == 7  # Tue 17 07:30 to Mon 23 07:30
        assert [d.met for d in r.week.departures].count(False) == 1
        # Night energy before midnight is priced at 0.32, after midnight at 0.18.
        assert 0 < r.week.cost < r.week.energy_wh / 1000 * 0.45
        text = render_text(r, led, "EUR")
    assert "hours lent" in text and "MISSED by 1.0 %" in text and "preempted" in text


def test_report_prints_today_and_week(week: Path, capsys: pytest.CaptureFixture[str]) -> None:
    at = dt.datetime.fromtimestamp(NOW, dt.UTC).isoformat()
    assert run_cli("report", "--db", str(week), "--policy", str(week.parent / "policy.toml"), "--at", at) == 0
    out = capsys.readouterr().out
    assert "today" in out and "last 7 days" in out and "SoC at departure" in out
    assert "Europe/Berlin" in out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_plot_writes_a_readable_chart(week: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    png = tmp_path / "week.png"
    at = dt.datetime.fromtimestamp(NOW, dt.UTC).isoformat()
    assert run_cli("report", "--db", str(week), "--policy", str(week.parent / "policy.toml"),
                   "--at", at, "--plot", str(png)) == 0
    w, h = png_size(png)
    assert w >= 1000 and h >= 900
    img = mpimg.imread(png)
    ink = (img[..., :3].mean(axis=2) < 0.9).mean()
    assert 0.02 < ink < 0.6  # bars, labels and axes drawn; not blank, not a solid block
    # The grid-energy blue and the battery orange are both on the chart.
    blue = np.all(np.abs(img[..., :3] - np.array([0x3B, 0x7D, 0xD8]) / 255) < 0.03, axis=2).sum()
    orange = np.all(np.abs(img[..., :3] - np.array([0xE8, 0x91, 0x2D]) / 255) < 0.03, axis=2).sum()
    assert blue > 200 and orange > 20


def test_report_without_a_ledger_or_with_a_bad_policy_says_so(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "--db", str(tmp_path / "none.sqlite")) == 1
    assert "no ledger" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("max_power_w = 'lots'")
    assert run_cli("report", "--policy", str(bad)) == 2
    assert run_cli("report", "--db", str(tmp_path / "none.sqlite"), "--at", "yesterday") == 2
