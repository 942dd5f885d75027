"""The preemption benchmark's governor/runner half runs and every trial ends PREEMPTED.

Functional only: timings are the benchmark's business, never asserted here.
"""

from __future__ import annotations

from bench import bench_preempt


def test_store_to_return_completes_a_few_trials() -> None:
    figures = bench_preempt.store_to_return(trials=5)
    assert set(figures) == {"store_to_return_p50_ms", "store_to_return_p99_ms"}
    assert all(v >= 0 for v in figures.values())


def test_the_bench_model_is_a_valid_conv() -> None:
    data = bench_preempt.conv_model(h=4, w=4, c=2, o=2)
    assert data[4:8] == b"TFL3"


def test_the_full_chain_preempts_every_trial_through_the_real_bus_and_engine() -> None:
    # pty -> BusReader -> StateStore -> GovernedLoop -> Runner -> native CONV_2D kernel.
    figures = bench_preempt.frame_to_kernel(trials=3)
    assert figures["trials"] == 3 and figures["preempted_outcomes"] == 3
