"""The plan: Python and C agree on op kinds, the C side re-checks every table row, the arena
reuses memory between tensors whose lifetimes do not overlap."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from agent.inference import _native, load_model, tflite
from agent.inference.models import make_thin_path
from agent.inference.plan import NativeOp
from agent.inference.planner import Planner
from tests.inference import fuzz_seeds, models
from tests.inference.oracle import litert_run, random_input

HEADER = Path(__file__).resolve().parents[2] / "native" / "include" / "fn_engine.h"


def test_python_op_kinds_mirror_the_c_enum() -> None:
    body = re.search(r"enum fn_op \{(.*?)\};", HEADER.read_text(), re.DOTALL)
    assert body is not None
    names = re.findall(r"FN_OP_([A-Z0-9_]+)", body.group(1))
    assert names[-1] == "COUNT"
    assert names[:-1] == [op.name for op in NativeOp]


def _thin_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    t = Planner(tflite.parse(make_thin_path.build())).plan()
    return t.tensor_rows.copy(), t.node_rows.copy(), t.consts, t.arena_bytes


def test_c_refuses_a_tensor_outside_its_region() -> None:
    rows, nodes, consts, arena = _thin_tables()
    _native.Plan(rows, nodes, np.zeros(arena, np.uint8), consts)  # the genuine tables are accepted
    rows[0, 9] = arena  # offset past the arena
    with pytest.raises(_native.PlanError):
        _native.Plan(rows, nodes, np.zeros(arena, np.uint8), consts)


def test_c_refuses_a_node_whose_shapes_do_not_fit_its_kernel() -> None:
    rows, nodes, consts, arena = _thin_tables()
    nodes[0, 3 + 8] = nodes[0, 3]  # FC output := its own input (16 elements, not 32)
    with pytest.raises(_native.PlanError) as e:
        _native.Plan(rows, nodes, np.zeros(arena, np.uint8), consts)
    assert e.value.index == 0


def test_c_refuses_an_unknown_op_kind() -> None:
    rows, nodes, consts, arena = _thin_tables()
    nodes[1, 0] = 999
    with pytest.raises(_native.PlanError):
        _native.Plan(rows, nodes, np.zeros(arena, np.uint8), consts)


def test_arena_reuses_memory_of_dead_tensors() -> None:
    # a chain of 6 elementwise ops on 64 KiB tensors needs 2-3 live buffers, not 7
    mb_model = models.single_op("RELU", [((256, 256), "int8", (0.1, 0), None)], [((256, 256), "int8", (0.1, 0))])
    chain = _relu_chain(6)
    m = load_model(chain)
    assert m.arena_bytes <= 3 * 65536  # type: ignore[attr-defined]
    assert load_model(mb_model).arena_bytes <= 2 * 65536  # type: ignore[attr-defined]


def _relu_chain(n: int) -> bytes:
    from agent.inference.builder import ModelBuilder

    mb = ModelBuilder()
    t = [mb.tensor((256, 256), "int8", scale=0.1, zero_point=0) for _ in range(n + 1)]
    for a, b in itertools.pairwise(t):
        mb.op("RELU", [a], [b])
    return mb.build([t[0]], [t[-1]])


def test_intermediate_results_survive_reuse() -> None:
    # the same chain computed with and without memory reuse gives the same bytes
    from agent.inference.native_backend import NativeModel

    data = _relu_chain(6)
    x = np.random.default_rng(0).integers(-128, 128, (256, 256), dtype=np.int8)
    a = load_model(data).run([x])[0]
    b = NativeModel(tflite.parse(data), keep_intermediates=True).run([x])[0]
    assert a.tobytes() == b.tobytes()


PARAMS = 3 + 8 + 4  # node row: op, n_in, n_out, in[8], out[4], then the kernel's parameters


def _seed_tables(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    t = Planner(tflite.parse(fuzz_seeds.seed_models()[index])).plan()
    return t.tensor_rows.copy(), t.node_rows.copy(), t.consts, t.arena_bytes


def _refused(rows: np.ndarray, nodes: np.ndarray, consts: np.ndarray, arena: int) -> bool:
    try:
        _native.Plan(rows, nodes, np.zeros(arena, np.uint8), consts)
    except _native.PlanError:
        return True
    return False


def test_c_refuses_outputs_in_the_constants_or_overlapping_an_input() -> None:
    rows, nodes, consts, arena = _thin_tables()
    out, x = nodes[0, 3 + 8], nodes[0, 3]
    assert not _refused(rows, nodes, consts, arena)
    in_consts = rows.copy()
    in_consts[out, 8:10] = (1, 0)  # the first FC writes over the start of the constant blob
    assert _refused(in_consts, nodes, consts, arena)
    overlapping = rows.copy()
    overlapping[out, 9] = rows[x, 9]  # output placed on its own input: a kernel reads what it wrote
    assert _refused(overlapping, nodes, consts, arena)


@pytest.mark.parametrize("col, bad, good", [(19, 128, 127), (20, -129, -128), (21, 2**31 - 1, -5)])
def test_c_refuses_zero_points_outside_int8(col: int, bad: int, good: int) -> None:
    rows, nodes, consts, arena = _seed_tables(5)  # MUL: zero points of a, b and the output
    assert nodes[0, 0] == NativeOp.MUL_S8
    nodes[0, PARAMS + col] = good
    assert not _refused(rows, nodes, consts, arena)
    nodes[0, PARAMS + col] = bad
    assert _refused(rows, nodes, consts, arena)


def test_c_refuses_strided_copies_that_revisit_or_leave_their_output() -> None:
    rows, nodes, consts, arena = _seed_tables(10)  # TRANSPOSE (2, 3, 4) -> (4, 2, 3)
    assert nodes[0, 0] == NativeOp.STRIDED_COPY and not _refused(rows, nodes, consts, arena)
    dims, out_str = PARAMS + 0, PARAMS + 14
    d = next(k for k in range(6) if nodes[0, dims + k] > 1)
    for change in ({out_str + d: 0},  # every step writes the same element: work unbounded by the output
                   {dims + d: nodes[0, dims + d] + 1},  # one step too many: past both tensors
                   {out_str + d: -nodes[0, out_str + d]},  # walks below element 0
                   {dims + d: 1 << 30}):  # more elements than the output has
        bad = nodes.copy()
        for col, v in change.items():
            bad[0, col] = v
        assert _refused(rows, bad, consts, arena), change


@pytest.mark.parametrize("name", ["mobilenet_v2_035_64", "transformer_tiny", "fc_autoencoder"])
def test_a_plan_reads_the_constants_only_while_it_is_created(name: str) -> None:
    """The plan copies the constants its kernels read and packs the filters, so the caller's
    constants can be overwritten (or freed) once it exists: the outputs stay LiteRT's."""
    data = (Path(__file__).resolve().parents[2] / "models" / "zoo" / f"{name}.tflite").read_bytes()
    model = load_model(data)
    t = Planner(tflite.parse(data)).plan()
    arena = np.zeros(t.arena_bytes, np.uint8)
    consts = t.consts.copy()
    plan = _native.Plan(t.tensor_rows, t.node_rows, arena, consts)
    consts[:] = 0x5A  # what the plan did not copy is gone
    x = [random_input(np.random.default_rng(3), s.dtype, s.shape) for s in model.inputs]
    for pid, xi in zip(t.inputs, x):
        off = t.offsets[pid]
        arena[off:off + xi.nbytes] = np.ascontiguousarray(xi).view(np.uint8).ravel()
    status, node, _ = plan.run_profile(np.zeros(1, np.int32))
    assert status == 0, (status, node)
    for pid, ref in zip(t.outputs, litert_run(data, x)):
        off = t.offsets[pid]
        assert arena[off:off + ref.nbytes].tobytes() == np.ascontiguousarray(ref).tobytes()
