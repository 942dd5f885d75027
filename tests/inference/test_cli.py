"""`fleetnode infer`: writes LiteRT's bytes to output_0..., refuses bad inputs with one clear line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.inference import cli
from agent.inference.models import make_thin_path
from tests.inference.oracle import litert_run


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetnode")
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    p = tmp_path / "m.tflite"
    p.write_bytes(make_thin_path.build())
    return p


@pytest.mark.parametrize("backend", ["native", "litert"])
def test_infer_writes_outputs_equal_to_litert(model: Path, tmp_path: Path, backend: str) -> None:
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 16), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    args = _parse(["infer", str(model), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npz"),
                   "--backend", backend])
    assert args.func(args) == 0
    with np.load(tmp_path / "o.npz") as z:
        assert list(z.keys()) == ["output_0"]
        assert z["output_0"].tobytes() == litert_run(model.read_bytes(), [x])[0].tobytes()


def test_infer_refuses_bad_shape_dtype_count_and_model(model: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.npz")
    np.save(tmp_path / "wrong_shape.npy", np.zeros((1, 15), np.int8))
    np.save(tmp_path / "wrong_dtype.npy", np.zeros((1, 16), np.float32))
    cases = [
        (["--input", str(tmp_path / "wrong_shape.npy")], "needs int8[1, 16]"),
        (["--input", str(tmp_path / "wrong_dtype.npy")], "needs int8[1, 16]"),
        ([], "takes 1 input"),
        (["--input", str(tmp_path / "missing.npy")], "cannot read"),
    ]
    for extra, message in cases:
        args = _parse(["infer", str(model), "--output", out] + extra)
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage" * 10)
    args = _parse(["infer", str(bad), "--output", out])
    assert args.func(args) == 2
    assert "TFL3" in capsys.readouterr().err
    assert not Path(out).exists()


def test_infer_help_answers() -> None:
    r = subprocess.run([sys.executable, "-m", "agent.inference.cli", "--help"], capture_output=True, text=True,
                       check=False, timeout=60)
    assert r.returncode == 0 and "--backend" in r.stdout and "--delegate" in r.stdout
