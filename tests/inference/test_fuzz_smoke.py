"""Loader fuzz smoke: 1,200 mutated models; each loads and runs, or fails with a ModelError."""

from __future__ import annotations

import pytest

from tests.inference import fuzzing


def test_every_seed_model_loads_and_runs() -> None:
    rng = __import__("numpy").random.default_rng(0)
    assert [fuzzing.exercise(m, rng) for m in fuzzing.seed_models()] == ["ok"] * len(fuzzing.seed_models())


def test_mutated_models_never_crash_and_only_raise_model_errors() -> None:
    tally = fuzzing.run(1200, seed=7, report=None)  # type: ignore[arg-type]
    assert sum(tally.values()) == 1200
    # the mutations must reach past the loader too, or the smoke would only test the parser
    assert tally["ok"] > 50 and tally["refused"] > 50


def test_every_truncation_of_a_model_is_a_model_error() -> None:
    from agent.inference import ModelError, load_model
    from agent.inference.models import make_thin_path

    data = make_thin_path.build()
    for cut in range(len(data)):
        with pytest.raises(ModelError):
            load_model(data[:cut])
