"""Credits granted by the fleet: recorded once per grant, shown next to the claimed ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.ledger import Ledger, LedgerError
from agent.ledger.report import build, render_text

WALL = 1_800_000_000.0


def test_a_grant_is_recorded_once_and_the_report_shows_granted_next_to_claimed(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.record_grant("g1", WALL, "job1", "task1", 0.25, 1.5)
        assert not ledger.record_grant("g1", WALL, "job1", "task1", 0.25, 1.5)  # a resend
        assert ledger.record_grant("g2", WALL + 60, "job2", "task2", 0.5, 3.0)
        s = ledger.summary(0, WALL + 3600)
        assert (s.granted, s.grants, s.credits) == (0.75, 2, 0.0)
        assert ledger.summary(WALL + 3600, WALL + 7200).grants == 0
        text = render_text(build(ledger, WALL + 120), ledger)
    assert "credits claimed" in text
    line = next(x for x in text.splitlines() if x.startswith("credits granted"))
    assert line.split()[-2:] == ["0.750000", "0.750000"]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_grant_with_figures_out_of_range_is_refused(tmp_path: Path, bad: float) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(LedgerError):
            ledger.record_grant("g", WALL, "j", "t", bad, 0.0)
        with pytest.raises(LedgerError):
            ledger.record_grant("g", WALL, "j", "t", 0.0, bad)
        assert ledger.summary(0, 2 * WALL).grants == 0
