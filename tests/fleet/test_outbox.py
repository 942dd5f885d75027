"""The outbox on its own: one answer per job id, sequence numbers that survive a reopen,
retries in order, deletion only on acknowledgement, the dedup window."""

from __future__ import annotations

from pathlib import Path

from agent.fleet.outbox import ACCEPTED, ANSWERED, NEW, Outbox


def test_one_answer_per_job_and_state_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    box = Outbox(db)
    assert box.accept("j1", "sub", 100.0) and not box.accept("j1", "sub", 100.0)
    assert box.status("j1") == ACCEPTED and box.status("j2") == NEW
    assert box.answer("j1", "topic/j1", lambda seq: f"r{seq}".encode(), 101.0) == 1
    assert box.answer("j1", "topic/j1", lambda seq: b"again", 102.0) is None
    assert box.status("j1") == ANSWERED and not box.accept("j1", "sub", 103.0)
    box.accept("j2", "sub", 104.0)
    box.close()
    box = Outbox(db)  # a restart: the answer is still waiting, j2 still accepted-unanswered
    assert [r.payload for r in box.due(0.0, 10)] == [b"r1"]
    assert box.accepted() == [("j2", "sub")]
    assert box.answer("j2", "topic/j2", lambda seq: f"r{seq}".encode(), 105.0) == 2  # seq goes on
    box.close()


def test_records_leave_only_on_acknowledgement_and_retry_when_due(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for j in ("a", "b", "c"):
        box.accept(j, "s", 0.0)
        box.answer(j, f"t/{j}", lambda seq: b"x", 0.0)
    assert [r.job_id for r in box.due(10.0, 10)] == ["a", "b", "c"]
    box.sent("a", retry_at_mono=20.0)
    assert [r.job_id for r in box.due(10.0, 10)] == ["b", "c"]
    assert [r.attempts for r in box.due(25.0, 1)] == [1]
    box.retry_all_now()
    assert box.next_due() == 0.0
    assert box.acknowledge(["a", "zz"]) == 1 and box.depth() == 2
    assert box.acknowledge(["a"]) == 0  # a repeated ack is harmless


def test_dedup_window_forgets_old_answered_ids_but_never_pending_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", dedup_window_s=100.0, max_answered=3)
    for i in range(6):
        box.accept(f"j{i}", "s", float(i))
        box.answer(f"j{i}", "t", lambda seq: b"x", float(i))
    box.acknowledge([f"j{i}" for i in range(5)])  # j5 still unacknowledged
    box.prune(1000.0)
    assert box.status("j5") == ANSWERED  # still in the outbox: kept
    assert all(box.status(f"j{i}") == NEW for i in range(5))
