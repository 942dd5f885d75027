"""The committed thin-path model: loads, and gives LiteRT's exact bytes on random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.inference import TensorSpec, load_model
from agent.inference.models import make_thin_path
from tests.inference.oracle import litert_run

MODEL = Path(make_thin_path.__file__).with_name("thin_path.tflite")


def test_thin_path_file_is_what_the_script_writes() -> None:
    assert MODEL.read_bytes() == make_thin_path.build()


def test_thin_path_specs() -> None:
    m = load_model(MODEL)
    assert [s.shape for s in m.inputs] == [(1, 16)] and [s.shape for s in m.outputs] == [(1, 4)]
    assert isinstance(m.inputs[0], TensorSpec) and m.inputs[0].dtype == np.int8
    assert m.inputs[0].zero_point == -3 and abs(m.inputs[0].scale - 0.05) < 1e-8


def test_thin_path_bytes_equal_litert_over_random_inputs() -> None:
    data = MODEL.read_bytes()
    native = load_model(data)
    litert = load_model(data, backend="litert")
    rng = np.random.default_rng(7)
    for _ in range(300):
        x = rng.integers(-128, 128, size=(1, 16), dtype=np.int8)
        ours = native.run([x])[0]
        assert ours.tobytes() == litert.run([x])[0].tobytes()
        assert ours.tobytes() == litert_run(data, [x])[0].tobytes()
