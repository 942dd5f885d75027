"""The element-wise microkernels' SIMD variants against their scalar twins, byte for byte, at
parameters LiteRT never produces (it refuses them or wraps first) but a node's check admits:
native/tests/fn_eltwise_ukernel_test.c, built here with the library's strict flags and each
microkernel file with its ISA's flags."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.inference import _native

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
FAMILIES = ("qs8-vadd", "qs8-vmul", "x8-lut", "qs8-mean", "s8-pool", "qs8-softmax")
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L", f"-I{NATIVE / 'include'}"]

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or "avx2" not in _native.supported_isas()
                                or shutil.which("cc") is None, reason="needs an AVX2 x86-64 machine and cc")


def test_avx2_microkernels_equal_scalar_ones(tmp_path: Path) -> None:
    objects = []
    for family in FAMILIES:
        for src in sorted((NATIVE / "src" / "ukernels" / family).glob("*.c")):
            isa = ["-mavx2", "-mfma"] if src.stem.endswith("-avx2") else []
            obj = tmp_path / (src.stem + ".o")
            subprocess.run(["cc", *STRICT, *isa, "-c", str(src), "-o", str(obj)], check=True, capture_output=True)
            objects.append(str(obj))
    exe = tmp_path / "fn_eltwise_ukernel_test"
    subprocess.run(["cc", *STRICT, "-o", str(exe), str(NATIVE / "tests" / "fn_eltwise_ukernel_test.c"), *objects, "-lm"],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe), "100000"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 mismatches" in out.stdout
