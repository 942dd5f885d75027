"""Every HIL scenario, shortened ([short] table): the real shim on a pty, the real agent on the
bench's shared clock, a real mosquitto and the fleet side. Each must pass all its expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil import report, scenario
from hil.runner import Bench

SCENARIOS = scenario.all_scenarios()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_short_passes(path: Path, tmp_path: Path) -> None:
    sc = scenario.load(path, short=True)
    res = Bench(sc, workdir=tmp_path / "bench").run()
    md, png = report.write(res, tmp_path / "reports")
    assert png.stat().st_size > 10_000
    assert "Verdict:" in md.read_text()
    assert res.ok, "; ".join(f"{v.name}: {v.detail}" for v in res.failed)
    assert res.steps > 0 and res.samples
