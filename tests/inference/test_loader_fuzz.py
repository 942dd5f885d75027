"""Mutated models (the zoo, the thin path and a one-op model of every op family): every load is
a model or a ModelError, every run too.

The structure-aware mutator and the property live in tests.inference.loader_fuzz (`make fuzz`
runs the same property over 100,000 mutants against a sanitizer build of the C library).
"""

from __future__ import annotations

import collections
import struct

import numpy as np
import pytest

from agent.inference import ModelError, load_model
from tests.inference.loader_fuzz import SEEDS, Mutator, check, seed_models

MUTANTS = 3000
SEED = 20261123


@pytest.fixture(scope="module")
def mutator() -> Mutator:
    return Mutator(seed_models(op_models=True))


def test_every_seed_model_loads_and_runs(mutator: Mutator) -> None:
    """Unmutated, each seed passes: a refusal here would make its mutants test nothing."""
    outcomes = {name: check(data, np.random.default_rng(0)) for name, data in zip(mutator.names, mutator.seeds)}
    assert set(outcomes.values()) == {"ran"}, outcomes
    assert {p.stem for p in SEEDS} < set(outcomes) and sum(n.startswith("op") for n in outcomes) >= 15


def test_mutants_load_and_run_or_raise_a_model_error(mutator: Mutator) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    seeds: collections.Counter[str] = collections.Counter()
    failures = []
    for i in range(MUTANTS):
        data, what = mutator.mutant(SEED, i)
        seeds[what.split(":")[0]] += 1
        for part in what.split(": ", 1)[1].split("; "):
            kinds[part.split(" ")[0]] += 1
        try:
            outcomes[check(data, np.random.default_rng(i))] += 1
        except AssertionError as e:
            failures.append(f"mutant {i} ({what}): {e}")
    assert not failures, "\n".join(failures[:10])
    # The mix must reach past the parser: some mutants load and run, most are refused.
    assert outcomes["ran"] >= MUTANTS // 20, outcomes
    assert sum(v for k, v in outcomes.items() if k.startswith("refused")) >= MUTANTS // 2, outcomes
    assert set(seeds) == set(mutator.names), seeds  # every seed, zoo and one-op models alike
    assert all(kinds[k] >= 50 for k in ("flip", "byte", "truncate", "uoffset", "vector", "vtable", "int32",
                                        "float32", "field")), kinds


def test_mutants_are_a_function_of_seed_and_index(mutator: Mutator) -> None:
    a, what = mutator.mutant(SEED, 7)
    assert (a, what) == mutator.mutant(SEED, 7)
    assert mutator.mutant(SEED, 8)[0] != a
    assert all(mutator.mutant(SEED, i)[0] not in mutator.seeds for i in range(50) if "truncate to" not in
               mutator.mutant(SEED, i)[1])


def _thin(mutator: Mutator) -> tuple[bytes, int]:
    s = [p.stem for p in SEEDS].index("thin_path")
    return mutator.seeds[s], s


def test_every_inflated_vector_length_is_a_model_error(mutator: Mutator) -> None:
    data, s = _thin(mutator)
    lengths = sorted(set(mutator.layouts[s].lengths))
    assert len(lengths) >= 20  # tensors, shapes, buffers, operators, names, quantization vectors
    for pos in lengths:
        for value in (0x0FFFFFFF, 0xFFFFFFFF, len(data)):
            bad = bytearray(data)
            struct.pack_into("<I", bad, pos, value)
            with pytest.raises(ModelError, match=r"\w"):
                load_model(bytes(bad))


def test_every_offset_past_the_end_is_a_model_error(mutator: Mutator) -> None:
    data, s = _thin(mutator)
    for pos in sorted(set(mutator.layouts[s].uoffsets)):
        bad = bytearray(data)
        struct.pack_into("<I", bad, pos, len(data) - pos)  # lands exactly on the end of the file
        with pytest.raises(ModelError, match="outside|offset|malformed"):
            load_model(bytes(bad))


def test_every_truncation_of_the_thin_path_is_a_model_error(mutator: Mutator) -> None:
    data, _ = _thin(mutator)
    for n in range(len(data)):
        with pytest.raises(ModelError, match=r"\w"):
            load_model(data[:n])
