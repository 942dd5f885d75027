"""The model zoo (models/zoo/*.tflite, generated with TensorFlow's full-integer converter): every
model, 20 random inputs, our bytes equal LiteRT's builtin kernels' bytes. FLEETNODE_ZOO_DIR
points the test at another copy of the zoo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.inference.oracle import assert_bit_exact

ROOT = Path(__file__).resolve().parents[2]
ZOO = Path(os.environ.get("FLEETNODE_ZOO_DIR", ROOT / "models" / "zoo"))
MODELS = sorted(ZOO.glob("*.tflite")) if ZOO.is_dir() else []


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_zoo_model_is_bit_exact_with_litert(path: Path) -> None:
    assert_bit_exact(path.read_bytes(), np.random.default_rng(20), runs=20)
