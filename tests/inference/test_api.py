"""The public API: errors for bad inputs and models, cancellation from another thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.inference import Cancelled, CancelToken, ModelError, UnsupportedOpError, load_model
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
