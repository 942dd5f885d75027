"""A short run of the plan fuzzer (`make fuzz` runs 50,000 iterations): the C library built with
AddressSanitizer and UndefinedBehaviorSanitizer, mutated plans of the zoo and the one-op models.
Any sanitizer report (an out-of-bounds read, a misaligned store) ends the run with an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NATIVE = Path(__file__).resolve().parents[2] / "native"


def test_a_short_plan_fuzz_run_under_the_sanitizers_is_clean(tmp_path: Path) -> None:
    run = subprocess.run(["make", "-s", "-C", str(NATIVE), f"BUILD={tmp_path}", f"PY={sys.executable}",
                          "FUZZ_PLANS=3000", "fuzz-plans"], check=False, capture_output=True, text=True, timeout=600)
    report = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, report
    assert "runtime error" not in report and "ERROR: AddressSanitizer" not in report, report
