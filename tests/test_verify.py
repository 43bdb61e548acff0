"""verify: what no longer loads with today's classes is counted by cause, and nothing changes."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

from jobq import JobState
from jobq.testing import run_burst
from jobq.verify import verify


def test_clean_queue_verifies(queue):
    """Every record and snapshot of a healthy queue loads."""
    queue.enqueue_many("jobtasks:add", [(i, i) for i in range(5)])
    run_burst(queue)
    report = verify(queue)
    assert report.ok and (report.records_ok, report.snapshots_ok) == (5, 5)


def test_snapshot_from_a_newer_schema_and_a_vanished_checkpoint_class_fail(queue, tmp_path,
                                                                          monkeypatch):
    """A snapshot that cannot migrate, or whose checkpoint class is gone, is reported by cause."""
    (tmp_path / "ckpt_mod.py").write_text(textwrap.dedent("""
        class Cursor:
            def __init__(self, row): self.row = row
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ckpt_mod
    future, vanished, fine = (queue.enqueue("jobtasks:add", i, i) for i in range(3))
    claim = {c.job_id: c for c in queue.store.claim("w", 3)}
    queue.store.save_checkpoint(vanished, claim[vanished].token, ckpt_mod.Cursor(7), 0.5)
    state = JobState(job_id=future, task="jobtasks:add").__getstate__()
    state["schema"] = JobState.SCHEMA_VERSION + 1
    raw = pickle.dumps(_Raw(state), protocol=5)
    queue.store.shelf.dict[future.encode()] = raw
    monkeypatch.delitem(sys.modules, "ckpt_mod")
    (tmp_path / "ckpt_mod.py").unlink()

    log_file = Path(queue.log.path(1))
    before = log_file.read_bytes()
    report = verify(queue)
    assert not report.ok and (report.snapshots_ok, report.snapshots_failed) == (1, 2)
    causes = " | ".join(report.causes)
    assert "newer than this jobq understands" in causes and "No module named 'ckpt_mod'" in causes
    assert {e["where"] for e in report.examples} == {f"job {future}", f"job {vanished}"}
    assert log_file.read_bytes() == before  # verify only reads
    assert queue.state(fine).status == "running"


class _Raw:
    """Pickles as a JobState carrying an arbitrary state dict (a snapshot from another version)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce__(self):
        return (_new_state, (), self.state)


def _new_state() -> JobState:
    return JobState.__new__(JobState)


def test_damaged_log_ranges_are_reported(queue):
    """A damaged range in the log is counted as damage, not as a record that failed to load."""
    queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2), (3, 3)])
    queue.counts()
    segment = queue.log.path(1)
    with open(segment, "r+b") as f:
        f.seek(40)  # inside the first record's body
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    report = verify(queue)
    assert (report.records_ok, report.records_failed, report.damaged_ranges) == (2, 0, 1)
