"""The C library cross-compiled for aarch64 and run under qemu-user reproduces, byte for byte, the
outputs LiteRT computed on x86-64 (and the load-time tables the x86-64 build made)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agent.inference.models import make_thin_path
from tests.inference import fuzzing, models
from tests.inference.vectors import write_vectors

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
ZOO = ROOT / "models" / "zoo"


def vector_models() -> list[bytes]:
    rng = np.random.default_rng(42)
    q = (0.03, -7)
    extra = [
        # channel counts that split LiteRT's vector blocks from its scalar tails
        models.conv2d(rng, h=6, w=6, c=20, depthwise=True, mult=1, padding=0),
        models.single_op("MEAN", [((1, 4, 4, 37), "int8", q, None), ((2,), "int32", None, np.array([1, 2], np.int32))],
                         [((1, 1, 1, 37), "int8", (0.01, 5))], "ReducerOptions", [(0, "bool", True)]),
        models.single_op("MEAN", [((2, 5, 12), "int8", q, None), ((1,), "int32", None, np.array([2], np.int32))],
                         [((2, 5), "int8", (0.02, -3))], "ReducerOptions", [(0, "bool", False)]),
        models.single_op("QUANTIZE", [((3, 13), "float32", None, None)], [((3, 13), "int8", q)]),
        models.single_op("QUANTIZE", [((3, 13), "int8", q, None)], [((3, 13), "int8", (0.05, 9))]),
        models.single_op("QUANTIZE", [((3, 13), "uint8", (0.03, 121), None)], [((3, 13), "int8", (0.05, 9))]),
        models.single_op("QUANTIZE", [((3, 13), "int8", q, None)], [((3, 13), "uint8", (0.05, 137))]),
        models.single_op("LOGISTIC", [((4, 9), "int8", q, None)], [((4, 9), "int8", (1 / 256, -128))]),
        models.single_op("TANH", [((4, 9), "int8", q, None)], [((4, 9), "int8", (1 / 128, 0))]),
        models.single_op("GELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, -20))], "GeluOptions",
                         [(0, "bool", False)]),
        models.single_op("GELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, -20))], "GeluOptions",
                         [(0, "bool", True)]),
        models.single_op("LEAKY_RELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, 3))], "LeakyReluOptions",
                         [(0, "f", 0.2)]),
    ]
    zoo = [p.read_bytes() for p in sorted(ZOO.glob("*.tflite"))] if ZOO.is_dir() else []
    return [make_thin_path.build()] + fuzzing.seed_models() + extra + zoo


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(2026)
    paths = []
    for i, m in enumerate(vector_models()):
        p = d / f"model_{i:02d}.fnv"
        write_vectors(m, p, rng, cases=3)
        paths.append(p)
    return paths


def _make(target: str) -> Path:
    subprocess.run(["make", "-s", "-C", str(NATIVE), target], check=True, timeout=600)
    return NATIVE / "build" / ("aarch64" if target == "aarch64" else "host") / "fn_vector_runner"


def test_vectors_pass_on_the_build_host(vector_files: list[Path]) -> None:
    runner = _make("host-runner")
    r = subprocess.run([str(runner), *map(str, vector_files)], capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{len(vector_files)} vector file(s), 0 failure(s)" in r.stdout


def test_vectors_pass_on_aarch64_under_qemu(vector_files: list[Path]) -> None:
    assert shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64"), \
        "the aarch64 test needs gcc-aarch64-linux-gnu and qemu-user (make sysdeps installs them)"
    runner = _make("aarch64")
    header = runner.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    r = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(runner), *map(str, vector_files)],
                       capture_output=True, text=True, check=False, timeout=900)
    assert r.returncode == 0, r.stderr
    assert f"{len(vector_files)} vector file(s), 0 failure(s)" in r.stdout


def test_a_corrupted_expectation_is_caught(vector_files: list[Path], tmp_path: Path) -> None:
    # the runner must be able to fail: flip the last expected output byte of one file
    runner = _make("host-runner")
    data = bytearray(vector_files[0].read_bytes())
    # layout ends with: ... expected bytes | u32 n_luts=0 | u32 n_softmax=0 for the thin path
    data[-9] ^= 0x01
    bad = tmp_path / "bad.fnv"
    bad.write_bytes(bytes(data))
    r = subprocess.run([str(runner), str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 1 and "differs from LiteRT" in r.stderr
