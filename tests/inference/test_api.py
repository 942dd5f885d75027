"""The public API: errors for bad inputs and models, cancellation from another thread."""

from __future__ import annotations

import collections.abc
import threading

import numpy as np
import pytest

from agent.inference import (
    Cancelled,
    CancelToken,
    InputError,
    Model,
    ModelError,
    UnsupportedOpError,
    counters,
    load_model,
)
from agent.inference.builder import ModelBuilder
from agent.inference.models import make_thin_path
from tests.inference import models


def test_wrong_shape_dtype_and_count_are_model_errors() -> None:
    m = load_model(make_thin_path.build())
    with pytest.raises(ModelError, match="shape"):
        m.run([np.zeros((1, 15), np.int8)])
    with pytest.raises(ModelError, match="dtype"):
        m.run([np.zeros((1, 16), np.uint8)])
    with pytest.raises(ModelError, match="inputs"):
        m.run([])


def test_unsupported_op_is_named_at_load_time() -> None:
    mb = ModelBuilder()
    x = mb.tensor((1, 4), "float32")
    y = mb.tensor((1, 4), "float32")
    mb.op("SIN", [x], [y])
    with pytest.raises(UnsupportedOpError, match="SIN"):
        load_model(mb.build([x], [y]))


def test_garbage_is_a_model_error() -> None:
    for data in (b"", b"\0" * 7, b"1234TFL3", bytes(range(256)) * 4):
        with pytest.raises(ModelError):
            load_model(data)


def test_arena_limit_refuses_a_model_that_needs_more() -> None:
    data = make_thin_path.build()
    need = load_model(data).arena_bytes  # type: ignore[attr-defined]
    load_model(data, arena_limit_bytes=need)
    with pytest.raises(ModelError, match="arena"):
        load_model(data, arena_limit_bytes=need - 1)


def _slow_model() -> bytes:
    # ~2.4 G multiply-adds (a good part of a second even vectorized): a cancel lands mid-run.
    rng = np.random.default_rng(0)
    return models.conv2d(rng, h=256, w=256, c=64, o=64, kh=3, kw=3, padding=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_cancel_from_another_thread_stops_the_run(threads: int) -> None:
    # with two threads, the plan's worker stops too: the run returns only once no task is left
    m = load_model(_slow_model(), threads=threads)
    x = np.zeros(m.inputs[0].shape, np.int8)
    outcomes: list[str] = []
    for _ in range(10):
        tok = CancelToken()
        entering = threading.Event()
        result: list[BaseException | None] = []

        def worker(tok: CancelToken = tok, entering: threading.Event = entering,
                   result: list[BaseException | None] = result) -> None:
            entering.set()
            try:
                m.run([x], cancel=tok)
                result.append(None)
            except BaseException as e:  # noqa: BLE001 - hand every outcome to the test thread
                result.append(e)

        t = threading.Thread(target=worker)
        t.start()
        assert entering.wait(10)
        tok.cancel()
        t.join(60)
        assert not t.is_alive() and len(result) == 1
        assert isinstance(result[0], Cancelled)  # a long run never completes first
        outcomes.append(str(result[0]))
        if str(result[0]) == "cancelled during the run":
            break
    # The cancel reached the kernels while they ran. That needs the GIL released: a thread
    # holding it in C would keep this thread from calling cancel() until the run was over.
    assert "cancelled during the run" in outcomes, outcomes


def test_cancelled_token_refuses_to_start_and_model_stays_usable() -> None:
    m = load_model(make_thin_path.build())
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        m.run([np.zeros((1, 16), np.int8)], cancel=tok)
    assert m.run([np.zeros((1, 16), np.int8)])[0].shape == (1, 4)


def test_convolutions_without_bias_are_refused() -> None:
    # LiteRT refuses CONV_2D without a bias and crashes on DEPTHWISE_CONV_2D without one; we
    # refuse both with a ModelError rather than invent an answer LiteRT cannot confirm.
    rng = np.random.default_rng(0)
    for depthwise in (False, True):
        with pytest.raises(ModelError, match="bias"):
            load_model(models.conv2d(rng, depthwise=depthwise, bias=False))


def test_a_model_asking_for_a_huge_arena_is_refused_without_allocating_it() -> None:
    huge = (1, 1 << 30)  # two 1 GiB activations: over the default cap for untrusted models
    data = models.single_op("RELU", [(huge, "int8", (0.1, 0), None)], [(huge, "int8", (0.1, 0))])
    with pytest.raises(ModelError, match="arena"):
        load_model(data)


# ---- run(out=...): caller-owned output buffers ------------------------------------------------

def _two_in_two_out() -> bytes:
    # int8 x, y [2, 8] -> (ADD(x, y), RELU(x)): several inputs and outputs, each copied on its own
    mb = ModelBuilder()
    x = mb.tensor((2, 8), "int8", scale=0.1, zero_point=-3)
    y = mb.tensor((2, 8), "int8", scale=0.05, zero_point=4)
    s = mb.tensor((2, 8), "int8", scale=0.12, zero_point=1)
    r = mb.tensor((2, 8), "int8", scale=0.1, zero_point=-3)
    mb.op("ADD", [x, y], [s], "AddOptions", [(0, "b", 0)])
    mb.op("RELU", [x], [r])
    return mb.build([x, y], [s, r])


def _rand_inputs(m: Model, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(-128, 128, size=s.shape, dtype=np.int8) for s in m.inputs]


def _bufs(m: Model) -> list[np.ndarray]:
    return [np.empty(s.shape, s.dtype) for s in m.outputs]


@pytest.mark.parametrize("backend", ["native", "litert"])
@pytest.mark.parametrize("threads", [1, 2])
def test_out_buffers_are_filled_returned_and_reused(backend: str, threads: int) -> None:
    m = load_model(_two_in_two_out(), backend=backend, threads=threads)
    rng = np.random.default_rng(0)
    bufs = _bufs(m)
    for _ in range(3):
        xs = _rand_inputs(m, rng)
        want = m.run(xs)
        got = m.run(xs, out=bufs)
        assert len(got) == 2 and all(g is b for g, b in zip(got, bufs))
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


def test_out_gives_the_same_bytes_as_fresh_outputs_and_as_litert() -> None:
    rng = np.random.default_rng(1)
    for data in (make_thin_path.build(), _two_in_two_out(), models.conv2d(rng, h=9, w=7, c=3, o=5)):
        native, litert = load_model(data), load_model(data, backend="litert")
        xs = _rand_inputs(native, rng)
        fresh = native.run(xs)
        into = native.run(xs, out=_bufs(native))
        ref = litert.run(xs, out=_bufs(litert))
        assert [a.tobytes() for a in into] == [a.tobytes() for a in fresh] == [a.tobytes() for a in ref]


@pytest.mark.parametrize("backend", ["native", "litert"])
def test_unfit_out_buffers_are_input_errors_and_counted(backend: str) -> None:
    m = load_model(_two_in_two_out(), backend=backend)
    xs = _rand_inputs(m, np.random.default_rng(2))
    good = _bufs(m)
    readonly = np.empty((2, 8), np.int8)
    readonly.flags.writeable = False
    cases = [
        ([good[0]], "out_count", "2 outputs, got 1 out arrays"),
        ([good[0], [[0] * 8] * 2], "out_type", "out 1 .* is list, expected a numpy array"),
        ([good[0], np.empty((2, 8), np.uint8)], "out_dtype", "out 1 .* has dtype uint8, expected int8"),
        ([good[0], np.empty((8, 2), np.int8)], "out_shape", r"out 1 .* has shape \(8, 2\), expected \(2, 8\)"),
        ([good[0], np.empty((1, 16), np.int8)], "out_shape", r"has shape \(1, 16\)"),
        ([good[0], np.empty((8, 2), np.int8).T], "out_layout", "out 1 .* is not C-contiguous"),
        ([good[0], np.empty((2, 16), np.int8)[:, ::2]], "out_layout", "not C-contiguous"),
        ([good[0], readonly], "out_readonly", "out 1 .* is read-only"),
    ]
    for out, counter, message in cases:
        before = counters.snapshot().get(counter, 0)
        sentinel = [b.copy() for b in out if isinstance(b, np.ndarray)]
        with pytest.raises(InputError, match=message):
            m.run(xs, out=out)
        assert counters.snapshot().get(counter, 0) == before + 1, counter
        # refused before anything ran: the buffers that were given are untouched
        assert [b.tobytes() for b in out if isinstance(b, np.ndarray)] == [b.tobytes() for b in sentinel]
    assert [a.tobytes() for a in m.run(xs, out=good)] == [a.tobytes() for a in m.run(xs)]


def test_outputs_never_alias_the_arena_across_runs() -> None:
    m = load_model(_two_in_two_out())
    rng = np.random.default_rng(3)
    arena = m._arena  # type: ignore[attr-defined]
    xs1, xs2 = _rand_inputs(m, rng), _rand_inputs(m, rng)
    first = m.run(xs1)
    kept = [a.copy() for a in first]
    bufs = _bufs(m)
    into = m.run(xs1, out=bufs)
    kept_into = [a.copy() for a in into]
    second = m.run(xs2)
    assert [a.tobytes() for a in second] != [a.tobytes() for a in kept]  # the run did change them
    for a in [*first, *into, *second]:
        assert not np.shares_memory(a, arena)
        assert a.flags.writeable and a.flags.c_contiguous
    # a later run overwrote the arena, not what earlier runs handed out
    assert [a.tobytes() for a in first] == [a.tobytes() for a in kept]
    assert [a.tobytes() for a in into] == [a.tobytes() for a in kept_into]
    # and two calls without out= never share a buffer
    again = m.run(xs2)
    assert all(not np.shares_memory(a, b) for a, b in zip(second, again))


class _PlainSequence(collections.abc.Sequence):  # type: ignore[type-arg]
    """A Sequence that is neither a list nor a tuple."""

    def __init__(self, items: list[np.ndarray]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, k):  # type: ignore[no-untyped-def]
        return self._items[k]


def test_inputs_of_any_layout_or_sequence_give_the_same_bytes() -> None:
    m = load_model(_two_in_two_out())
    rng = np.random.default_rng(4)
    xs = _rand_inputs(m, rng)
    want = [a.tobytes() for a in m.run(xs)]
    fortran = [np.asfortranarray(a) for a in xs]
    strided = [np.repeat(a, 2, axis=1)[:, ::2] for a in xs]
    assert not fortran[0].flags.c_contiguous and not strided[0].flags.c_contiguous
    assert all(np.array_equal(a, b) for a, b in zip(xs, strided))
    for given in (tuple(xs), fortran, strided, _PlainSequence(xs)):
        assert [a.tobytes() for a in m.run(given)] == want  # type: ignore[arg-type]
        assert [a.tobytes() for a in m.run(given, out=tuple(_bufs(m)))] == want  # type: ignore[arg-type]


def test_bad_inputs_keep_their_errors_and_counters_on_the_fast_path() -> None:
    m = load_model(_two_in_two_out())
    x = np.zeros((2, 8), np.int8)
    cases = [
        ([x], "input_count", "model takes 2 inputs, got 1"),
        ([x, x.tolist()], "input_type", r"input 1 \(.*\) is list, expected a numpy array"),
        ([x, x.astype(np.int16)], "input_dtype", "input 1 .* has dtype int16, expected int8"),
        ([x, x.reshape(8, 2)], "input_shape", r"input 1 .* has shape \(8, 2\), expected \(2, 8\)"),
        ((x.reshape(1, 2, 8), x), "input_shape", r"input 0 .* has shape \(1, 2, 8\)"),
    ]
    for inputs, counter, message in cases:
        for out in (None, _bufs(m)):
            before = counters.snapshot().get(counter, 0)
            with pytest.raises(InputError, match=message):
                m.run(inputs, out=out)  # type: ignore[arg-type]
            assert counters.snapshot().get(counter, 0) == before + 1, counter
    # as before, a bad input is reported ahead of a token that is already cancelled
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(InputError, match="has dtype"):
        m.run([x, x.astype(np.int16)], cancel=tok)
    with pytest.raises(InputError, match="read-only"):
        ro = np.zeros((2, 8), np.int8)
        ro.flags.writeable = False
        m.run([x, x], cancel=tok, out=[ro, ro])
    with pytest.raises(Cancelled):
        m.run([x, x], cancel=tok)


def test_a_run_without_a_token_creates_none(monkeypatch: pytest.MonkeyPatch) -> None:
    m = load_model(make_thin_path.build())
    made: list[object] = []
    real_init = CancelToken.__init__

    def counting_init(self: CancelToken) -> None:
        made.append(self)
        real_init(self)

    monkeypatch.setattr(CancelToken, "__init__", counting_init)
    bufs = _bufs(m)
    for _ in range(5):
        m.run([np.zeros((1, 16), np.int8)])
        m.run([np.zeros((1, 16), np.int8)], out=bufs)
    assert made == []
    assert m._idle_flag[0] == 0  # type: ignore[attr-defined]


def test_many_inputs_and_outputs() -> None:
    # 12 inputs, 12 outputs: more than the binding keeps on its stack
    mb = ModelBuilder()
    xs = [mb.tensor((3, k + 1), "int8", scale=0.1, zero_point=k - 6) for k in range(12)]
    ys = [mb.tensor((3, k + 1), "int8", scale=0.1, zero_point=k - 6) for k in range(12)]
    for x, y in zip(xs, ys):
        mb.op("RELU", [x], [y])
    data = mb.build(xs, ys[::-1])
    m, ref = load_model(data), load_model(data, backend="litert")
    rng = np.random.default_rng(5)
    inputs = _rand_inputs(m, rng)
    want = [a.tobytes() for a in ref.run(inputs)]
    assert [a.tobytes() for a in m.run(inputs)] == want
    bufs = _bufs(m)
    assert [a.tobytes() for a in m.run(inputs, out=bufs)] == want
    with pytest.raises(InputError, match="out 11 .* has shape"):
        m.run(inputs, out=[*bufs[:-1], np.empty((3, 2), np.int8)])


def test_a_constant_output_is_a_fresh_copy_every_run() -> None:
    # SHAPE is folded at load time: the graph output is a constant, not a tensor in the arena
    m = load_model(models.single_op("SHAPE", [((2, 3), "int8", (0.1, 0), None)], [((2,), "int32", None)]))
    x = np.zeros((2, 3), np.int8)
    first = m.run([x])[0]
    first[:] = -1  # the caller owns what it got
    assert m.run([x])[0].tolist() == [2, 3]
    buf = np.full(2, 7, np.int32)
    assert m.run([x], out=[buf])[0] is buf and buf.tolist() == [2, 3]
