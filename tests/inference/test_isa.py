"""Instruction-set selection: what this machine runs, FLEETNODE_ISA, the microkernel self-test.

Byte-exactness on every ISA is checked by every oracle test (tests/inference/oracle.py runs each
model on every ISA this machine supports, with one and two threads)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from agent.inference import ModelError, _native, load_model
from agent.inference import builder as models


def test_this_machine_runs_scalar_and_its_best_isa() -> None:
    isas = _native.supported_isas()
    assert isas[0] == "scalar" and _native.best_isa() == isas[-1]
    if platform.machine() == "x86_64":
        assert "avx2" in isas  # every machine of this project's kind has AVX2


def test_every_simd_gemm_this_machine_runs_passes_its_self_test() -> None:
    # a SIMD gemm that failed it would never be used; on this machine none may fail
    for isa in _native.supported_isas():
        if isa in ("avx2", "avx512vnni", "neon") and (isa != "neon" or platform.machine() == "aarch64"):
            assert _native.gemm_verified(isa), isa


def test_set_isa_refuses_unknown_and_unsupported_names() -> None:
    with pytest.raises(ValueError, match="unknown instruction set"):
        _native.set_isa("sse9")
    missing = [i for i in _native.ISAS if i not in _native.supported_isas()]
    for isa in missing:
        with pytest.raises(ValueError, match="cannot run"):
            _native.set_isa(isa)


def _run_with_isa(isa: str) -> subprocess.CompletedProcess[str]:
    code = ("from agent.inference import load_model, builder; import numpy as np; "
            "m = load_model(builder.fully_connected(np.random.default_rng(0), batch=1, depth=8, units=4)); "
            "print(m.isa)")
    env = dict(os.environ, FLEETNODE_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("isa", ["scalar", "avx2"] if platform.machine() == "x86_64" else ["scalar"])
def test_fleetnode_isa_forces_the_path(isa: str) -> None:
    r = _run_with_isa(isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_fleetnode_isa_naming_a_missing_isa_is_a_clear_error() -> None:
    missing = [i for i in _native.ISAS if i not in _native.supported_isas()]
    r = _run_with_isa(missing[0] if missing else "bogus")
    assert r.returncode != 0 and "ModelError: FLEETNODE_ISA=" in r.stderr


def test_threads_argument_is_checked() -> None:
    data = models.fully_connected(np.random.default_rng(0), batch=1, depth=8, units=4)
    for bad in (0, -1, _native.MAX_THREADS + 1):
        with pytest.raises(ModelError, match="threads"):
            load_model(data, threads=bad)
