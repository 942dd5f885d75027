"""The wheel installs anywhere: built from this tree with `python -m build`, installed into a
fresh venv with no compiler on PATH, then `fleetnode` and the inference tests run against the
installed package (tests/dist/installed_checks.py says what is checked there).

Dependencies come from a wheelhouse kept in build/wheelhouse, filled from the package index on
the first run and reused after, so the test needs the network once and is fast after that."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = REPO / "build" / "wheelhouse"
TEST_DEPS = ["pytest", "pytest-timeout", "hypothesis", "ai-edge-litert==2.3.0"]
# The inference tests that run against the installed package (LiteRT is their oracle).
SUBSET = ["tests/inference/test_thin_path.py", "tests/inference/test_api.py", "tests/inference/test_cli.py",
          "tests/dist/installed_checks.py"]


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: this tree's fleetnode.egg-info on it would make pip believe the
    # package is installed already, and its sources would shadow the installed ones.
    env = env if env is not None else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=env)


def pip_install(venv: Path, wheel: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links", str(WHEELHOUSE), str(wheel), *TEST_DEPS]
    if WHEELHOUSE.is_dir() and run(offline).returncode == 0:
        return
    # First run (or a new dependency): fill the wheelhouse from the index, then install offline.
    got = run([*pip, "download", "-q", "-d", str(WHEELHOUSE), str(wheel), *TEST_DEPS])
    assert got.returncode == 0, got.stderr[-3000:]
    for own in WHEELHOUSE.glob("fleetnode-*"):  # the wheel under test is never taken from the cache
        own.unlink()
    r = run(offline)
    assert r.returncode == 0, r.stderr[-3000:]


def test_wheel_installs_in_a_fresh_venv_without_a_compiler_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(dist), "."],
                cwd=REPO)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("fleetnode-*.whl")
    (sdist,) = dist.glob("fleetnode-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in ("native/_native.pyx", "native/include/fn_engine.h", "native/src/engine/fn_plan.c",
                 "firmware_shim/src/fw.c", "firmware_shim/Makefile", "setup.py", "MANIFEST.in"):
        assert need in names, f"the sdist lacks {need}"
    assert not any(n.endswith((".so", ".o", ".a")) for n in names)

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    pip_install(venv, wheel)
    assert (venv / "bin" / "fleetnode").exists()
    # Only the venv's bin on PATH: no cc, gcc or make; and nothing of this tree on sys.path.
    bare = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "FLEETNODE_REPO": str(REPO)}
    r = run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=append",
             "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), *(str(REPO / s) for s in SUBSET)],
            cwd=tmp_path, env=bare)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


def test_cibuildwheel_builds_manylinux_x86_64_and_aarch64() -> None:
    r = run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", "linux"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    ids = set(r.stdout.split())
    for py in ("cp311", "cp312", "cp313"):
        assert {f"{py}-manylinux_x86_64", f"{py}-manylinux_aarch64"} <= ids, ids
    assert not any("musllinux" in i for i in ids)
