"""`fleetnode model show`: every model of the zoo and every built-in model, described in its own
terms and checked against the zoo's manifest (written from LiteRT) and against the engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.inference import cli, load_model
from agent.inference.builder import ModelBuilder

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "zoo"
MANIFEST = {m["file"]: m for m in json.loads((ZOO / "manifest.json").read_text())["models"]}
MODELS = sorted(ZOO.glob("*.tflite")) + sorted((ROOT / "agent" / "inference" / "models").glob("*.tflite"))


def _show(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="fleetnode")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "show", str(path), *flags])
    rc = args.func(args)
    return rc, capsys.readouterr().out


def _io(t: dict[str, Any]) -> dict[str, Any]:
    return {"name": t["name"], "dtype": t["dtype"], "shape": t["shape"],
            "quantization": {"scale": pytest.approx(t["scale"], rel=1e-7), "zero_point": t["zero_point"]}}


def test_every_zoo_and_builtin_model_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(MODELS) >= 11 and any(p.parent.name == "models" for p in MODELS)
    for path in MODELS:
        rc, out = _show(path, capsys, "--json")
        assert rc == 0, path
        info = json.loads(out)
        model = load_model(path)
        assert info["supported"] is True and info["refusal"] is None
        assert info["arena_bytes"] == model.arena_bytes  # type: ignore[attr-defined]
        assert info["job_signature"] == [{"dtype": s.dtype.name, "shape": list(s.shape)}
                                         for s in model.inputs]
        assert [(t["name"], t["shape"]) for t in info["outputs"]] == [
            (s.name, list(s.shape)) for s in model.outputs]
        assert all(op["supported"] for op in info["operators"])
        m = MANIFEST.get(path.name)
        if m is not None:  # the zoo: the manifest's facts, as LiteRT reported them
            assert [{k: t[k] for k in ("name", "dtype", "shape", "quantization")}
                    for t in info["inputs"] + info["outputs"]] == [_io(t) for t in m["inputs"] + m["outputs"]]
            assert {op["op"]: op["count"] for op in info["operators"]} == m["ops"]
            assert info["macs"] == m["macs"]
            assert info["macs_by_op"] == m["macs_by_op"]
        rc, text = _show(path, capsys)
        assert rc == 0
        assert "engine: supported" in text and f"arena: {model.arena_bytes:,} bytes" in text  # type: ignore[attr-defined]
        for spec in model.inputs:
            assert f"{spec.name}: {spec.dtype.name}{list(spec.shape)}" in text


def test_a_refused_model_is_shown_with_what_the_engine_lacks(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    mb = ModelBuilder()
    x = mb.tensor((1, 4), "int8", name="in", scale=0.1, zero_point=0)
    h = mb.tensor((1, 4), "int8", scale=0.1, zero_point=0)
    y = mb.tensor((1, 4), "int8", name="out", scale=0.1, zero_point=0)
    mb.op("RELU", [x], [h])
    mb.op("SVDF", [h], [y])
    path = tmp_path / "svdf.tflite"
    path.write_bytes(mb.build([x], [y]))
    rc, out = _show(path, capsys, "--json")
    assert rc == 1
    info = json.loads(out)
    assert info["operators"] == [{"op": "RELU", "count": 1, "supported": True},
                                 {"op": "SVDF", "count": 1, "supported": False}]
    assert info["refusal"].startswith("unsupported: SVDF (1 use)")
    assert info["arena_bytes"] is None and info["macs"] is None
    assert info["job_signature"] == [{"dtype": "int8", "shape": [1, 4]}]
    rc, text = _show(path, capsys)
    assert rc == 1 and "SVDF     1  NOT SUPPORTED" in text and "engine: refused: unsupported: SVDF" in text


def test_bytes_that_are_not_a_model_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.tflite"
    path.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    parser = argparse.ArgumentParser(prog="fleetnode")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "show", str(path)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fleetnode model show: error: {path}: ") and "TFL3" in err
    args = parser.parse_args(["model", "show", str(tmp_path / "missing.tflite")])
    assert args.func(args) == 2
    assert "cannot read model" in capsys.readouterr().err
