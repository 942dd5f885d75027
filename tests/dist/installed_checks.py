"""Run by tests/dist/test_wheel.py inside the fresh venv, against the installed wheel (not
collected in the source tree: the name does not start with test_). FLEETNODE_REPO names the
source tree, for the model zoo."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import agent
from agent.inference import _native

REPO = Path(os.environ.get("FLEETNODE_REPO", Path(__file__).resolve().parents[2]))
ZOO = REPO / "models" / "zoo"
BIN = Path(sys.prefix) / "bin"


def fleetnode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "fleetnode"), *args], capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": str(BIN), "HOME": os.environ.get("HOME", "/tmp")})


def test_the_package_is_the_installed_wheel_and_no_compiler_is_on_path() -> None:
    prefix = str(Path(sys.prefix).resolve())
    assert str(Path(agent.__file__).resolve()).startswith(prefix), agent.__file__
    assert str(Path(_native.__file__).resolve()).startswith(prefix), _native.__file__
    for tool in ("cc", "gcc", "clang", "make"):
        assert shutil.which(tool) is None, f"{tool} is on PATH"


def test_version_comes_from_one_place_and_names_the_engine_isa() -> None:
    r = fleetnode("--version")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"fleetnode (\S+) \(engine: (\S+)\)\n", r.stdout)
    assert m, r.stdout
    assert m.group(1) == agent.__version__ == importlib.metadata.version("fleetnode")
    assert m.group(2) == _native.isa()


def test_fleetnode_infer_on_a_zoo_model_gives_the_reference_digest(tmp_path: Path) -> None:
    manifest = json.loads((ZOO / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["name"] == "mobilenet_v1_025_64")
    spec = entry["inputs"][0]
    info = np.iinfo(spec["dtype"])
    x = np.random.default_rng(7).integers(info.min, info.max + 1, spec["shape"]).astype(spec["dtype"])
    np.save(tmp_path / "x.npy", x)  # make_zoo.py's reference_input(): seed 7, the whole dtype range
    r = fleetnode("infer", str(ZOO / entry["file"]), "--input", str(tmp_path / "x.npy"),
                  "--output", str(tmp_path / "y.npz"))
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "y.npz") as out:
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(out[k]).tobytes() for k in sorted(out.files)))
    assert digest.hexdigest() == entry["reference_output_sha256"]


def test_doctor_finds_the_installed_engine_sound(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nserial_port = "{tmp_path / "none"}"\n')
    r = fleetnode("doctor", "--config", str(cfg), "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["engine"]["status"] == "OK", checks["engine"]
    assert checks["serial port"]["status"] == "FAIL"  # nothing is plugged in here


def test_the_dashboard_pages_ship_in_the_wheel() -> None:
    import importlib.resources

    static = importlib.resources.files("agent.fleetside") / "static"
    for name, marker in (("index.html", 'id="login"'), ("car.html", 'id="timeline"'),
                         ("dash.js", "text/event-stream"), ("dash.css", ".bar")):
        assert marker in (static / name).read_text(), name
