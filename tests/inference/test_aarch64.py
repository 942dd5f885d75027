"""The C library on aarch64 (cross-built, run under qemu-aarch64) computes LiteRT's x86-64 bytes.

The vectors are made here on x86-64 (tests.inference.aarch64_vectors): the plan tables of every
zoo model, the thin-path model and one-op models of every op family (with channel counts that
split LiteRT's vector blocks from their tails) as the planner builds them, random inputs, LiteRT's builtin
outputs and our engine's arena after the same run. native/tests/fn_vector_runner.c, compiled by
aarch64-linux-gnu-gcc with the library's strict flags and linked statically, runs them under
qemu-aarch64 and compares every graph output and every intermediate tensor byte for byte, once
per ISA the CPU supports and with one and two threads. qemu's default CPU ("max") has the dot
product, so both the scalar and the NEON dot-product microkernels meet LiteRT's x86-64 bytes;
"-cpu cortex-a53" has none, and then only the scalar ones may run. The microkernel tests
(native/tests/ukernels/) compare each variant with the scalar one on the epilogue's corners,
which model vectors rarely reach.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.inference.aarch64_vectors import (
    ROOT,
    THIN_PATH,
    model_paths,
    op_models,
    supported,
    write_vectors,
)

NATIVE = ROOT / "native"
CASES = 3
EM_AARCH64 = 183
PT_INTERP = 3
THREADS = (1, 2)
# a CPU model without ASIMDDP (dot product): qemu's default "max" has it
NO_DOTPROD_CPU = "cortex-a53"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xarch")
    # The cross build is part of what is tested: a warning under -Wall -Wextra -Werror fails it.
    subprocess.run(["make", "-s", "-C", str(NATIVE), f"BUILD={out}", "all", "cross"], check=True,
                   capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_vectors(tmp_path_factory.mktemp("vectors"), cases=CASES, extra=op_models())


def run(runner: list[str], files: list[Path], isa: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLEETNODE_ISA"}
    if isa is not None:
        env["FLEETNODE_ISA"] = isa
    return subprocess.run(runner + [str(f) for f in files], check=False, capture_output=True, text=True, timeout=600,
                          env=env)


def qemu(build: Path, cpu: str | None = None, program: str = "fn_vector_runner") -> list[str]:
    return [shutil.which("qemu-aarch64") or "qemu-aarch64", *(["-cpu", cpu] if cpu else []),
            str(build / "aarch64" / program)]


def runs(stdout: str) -> tuple[list[str], dict[str, str], dict[tuple[str, str, int], str]]:
    """The runner's ISAs, the GEMM microkernel ISA each binds, and its line per (plan, ISA, threads)."""
    lines = stdout.splitlines()
    assert lines and lines[0].startswith("isas:"), stdout
    isas = lines[0].removeprefix("isas:").split(";")[0].split()
    gemm = dict(re.findall(r"^isa (\w+): qs8-qc8w-gemm \d+x\d+c\d+ (\w+)$", stdout, re.MULTILINE))
    per_run = {}
    for m in re.finditer(r"^(ok|MISMATCH) (\S+) \((\w+), (\d+) threads?\)(.*)$", stdout, re.MULTILINE):
        per_run[(m[2], m[3], int(m[4]))] = m[1] + m[5]
    return isas, gemm, per_run


def assert_every_run_ok(stdout: str, vectors: list[Path], isas: list[str]) -> None:
    got_isas, gemm, per_run = runs(stdout)
    assert got_isas == isas, stdout
    assert all(gemm.get(isa) == isa for isa in isas), gemm  # no ISA ran another's microkernel
    for v in vectors:
        if v.suffix != ".plan":
            continue
        for isa in isas:
            for t in THREADS:
                line = per_run.get((v.stem, isa, t))
                assert line is not None, (v.stem, isa, t, stdout)
                assert line.startswith("ok:"), (v.stem, isa, t, line)
                assert f"{CASES} cases" in line and "(0 differ)" in line and "arena tensors" in line
    plans = sum(v.suffix == ".plan" for v in vectors)
    assert len(per_run) == plans * len(isas) * len(THREADS), stdout


def test_cross_built_runner_is_a_static_aarch64_executable(build: Path) -> None:
    elf = (build / "aarch64" / "fn_vector_runner").read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1  # 64-bit, little-endian
    assert struct.unpack_from("<H", elf, 18)[0] == EM_AARCH64
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    types = [struct.unpack_from("<I", elf, phoff + k * phentsize)[0] for k in range(phnum)]
    assert PT_INTERP not in types  # static: no dynamic loader, no aarch64 sysroot needed at run time


def test_vectors_cover_the_zoo_the_thin_path_and_every_op_family(vectors: list[Path]) -> None:
    names = {p.stem for p in vectors}
    assert {p.stem for p in model_paths()} | set(op_models()) | {"tables"} == names
    assert all(supported(p) for p in model_paths())


def test_aarch64_computes_litert_x86_bytes_for_every_model(build: Path, vectors: list[Path]) -> None:
    res = run(qemu(build), vectors)
    assert res.returncode == 0, res.stdout + res.stderr
    # the NEON dot-product path must have run, with its own microkernel, not only the scalar one
    assert_every_run_ok(res.stdout, vectors, ["scalar", "neon"])
    tables = next(ln for ln in res.stdout.splitlines() if ln.startswith("ok tables:"))
    assert tables.endswith(" 0 differ") and " 0 LUTs" not in tables


def test_a_cpu_without_dot_product_runs_the_scalar_kernels(build: Path, vectors: list[Path]) -> None:
    res = run(qemu(build, NO_DOTPROD_CPU), vectors)
    assert res.returncode == 0, res.stdout + res.stderr
    assert_every_run_ok(res.stdout, vectors, ["scalar"])


def test_fleetnode_isa_selects_one_isa_and_refuses_what_cannot_run(build: Path, vectors: list[Path]) -> None:
    thin = [v for v in vectors if v.stem == THIN_PATH.stem]
    res = run(qemu(build), thin, isa="neon")
    assert res.returncode == 0, res.stdout + res.stderr
    assert_every_run_ok(res.stdout, thin, ["neon"])
    res = run(qemu(build, NO_DOTPROD_CPU), thin, isa="neon")
    assert res.returncode == 2 and "FLEETNODE_ISA=neon: not supported here" in res.stderr
    res = run(qemu(build), thin, isa="avx2")
    assert res.returncode == 2 and "not supported here" in res.stderr
    res = run(qemu(build), thin, isa="sse9")
    assert res.returncode == 2 and "unknown ISA" in res.stderr


def test_neon_gemm_microkernel_agrees_with_scalar_on_the_epilogue_corners(build: Path) -> None:
    res = run(qemu(build, program="test_qs8_qc8w_gemm"), [])
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^ok qs8-qc8w-gemm neon \d+x\d+c4: \d+ trials$", res.stdout, re.MULTILINE), res.stdout
    assert re.search(r"^ok qs8-qc8w-gemm scalar ", res.stdout, re.MULTILINE), res.stdout
    res = run(qemu(build, NO_DOTPROD_CPU, program="test_qs8_qc8w_gemm"), [])
    assert res.returncode == 0 and "skip qs8-qc8w-gemm neon: not supported here" in res.stdout, res.stdout


def test_host_microkernels_agree_with_scalar(build: Path) -> None:
    res = run([str(build / "host" / "test_qs8_qc8w_gemm")], [])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "MISMATCH" not in res.stdout and "ok qs8-qc8w-gemm scalar " in res.stdout
    res = run([str(build / "host" / "test_eltwise")], [])
    assert res.returncode == 0 and "MISMATCH" not in res.stdout, res.stdout + res.stderr
    assert re.search(r"^(ok eltwise avx2: \d+ trials|skip eltwise avx2: not supported here)$", res.stdout,
                     re.MULTILINE), res.stdout
    res = run([str(build / "host" / "test_qs8_dwconv")], [])
    assert res.returncode == 0 and "MISMATCH" not in res.stdout, res.stdout + res.stderr
    for kernel in ("xp8c", "9p8c"):
        assert re.search(rf"^(ok qs8-dwconv avx2 {kernel}: \d+ trials|skip qs8-dwconv avx2: not supported here)$",
                         res.stdout, re.MULTILINE), res.stdout


def test_aarch64_eltwise_microkernels_agree_with_scalar(build: Path) -> None:
    res = run(qemu(build, program="test_eltwise") + ["2000"], [])  # trials: qemu is slow
    assert res.returncode == 0 and "ok eltwise scalar" in res.stdout, res.stdout + res.stderr


def test_neon_depthwise_microkernel_agrees_with_scalar(build: Path) -> None:
    res = run(qemu(build, program="test_qs8_dwconv") + ["3000"], [])  # trials: qemu is slow
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^ok qs8-dwconv neon xp8c: \d+ trials$", res.stdout, re.MULTILINE), res.stdout


def test_host_build_of_the_runner_agrees(build: Path, vectors: list[Path]) -> None:
    # The control: the same runner on x86-64 passes, so a failure under qemu is the architecture's.
    res = run([str(build / "host" / "fn_vector_runner")], vectors)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"0 of {len(vectors)} files failed" in res.stdout
    isas, _, _ = runs(res.stdout)
    assert isas[0] == "scalar" and "neon" not in isas
    assert_every_run_ok(res.stdout, vectors, isas)


def _flipped(src: Path, dst: Path, back: int) -> Path:
    data = bytearray(src.read_bytes())
    data[len(data) - back] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_runner_reports_one_flipped_byte(build: Path, vectors: list[Path], tmp_path: Path) -> None:
    thin = next(v for v in vectors if v.stem == THIN_PATH.stem)
    # The file ends with the last case's arena; the byte just before it is LiteRT's last output.
    arena_bytes = struct.unpack_from("<q", thin.read_bytes(), 16)[0]
    bad_output = _flipped(thin, tmp_path / "out.plan", arena_bytes + 1)
    res = run(qemu(build), [bad_output])
    assert res.returncode == 1 and "MISMATCH thin_path" in res.stdout and "1 differ" in res.stdout

    # Arena offset 0 always holds a tensor (the allocator places the biggest one there first).
    bad_tensor = _flipped(thin, tmp_path / "arena.plan", arena_bytes)
    res = run(qemu(build), [bad_tensor])
    assert res.returncode == 1 and "differs from x86-64" in res.stdout


def test_runner_refuses_a_truncated_file(build: Path, vectors: list[Path], tmp_path: Path) -> None:
    thin = next(v for v in vectors if v.stem == THIN_PATH.stem)
    for cut in (9, 40, len(thin.read_bytes()) - 1):
        short = tmp_path / f"short{cut}.plan"
        short.write_bytes(thin.read_bytes()[:cut])
        res = run(qemu(build), [short])
        assert res.returncode == 1 and "1 of 1 files failed" in res.stdout, (cut, res.stdout, res.stderr)
