"""verify: what no longer loads with today's classes is counted by cause, and nothing changes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import child_env, jobq_command
from test_damage import flip_byte_in_record, three_jobs_second_damaged

from jobq import JobState, Queue
from jobq.testing import run_burst
from jobq.maintenance import verify


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


def _jobq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*jobq_command(), *args], env=child_env(), text=True,
                          capture_output=True, timeout=120)


def test_cli_verify_fails_naming_each_unfinished_job_whose_record_is_damaged(queue, qpath):
    """Exit 1, and the job id, its file and offset, when a queued job's record cannot be read."""
    ids, path, offset = three_jobs_second_damaged(queue)
    done = _jobq("verify", "--dir", str(qpath))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{ids[1]}  queued  {path}:{offset}  body checksum mismatch" in done.stdout
    assert "verify: FAILED" in done.stdout
    report = json.loads(_jobq("verify", "--dir", str(qpath), "--json").stdout)
    assert (report["ok"], report["jobs_checked"], report["jobs_unreadable"]) == (False, 3, 1)
    (job,) = report["unreadable_jobs"]
    assert (job["job_id"], job["file"], job["offset"], job["saved_to"]) == (
        ids[1], path, offset, None)
    assert Path(queue.log.path(1)).exists() and queue.store.quarantined() == []  # only reads


def test_cli_verify_passes_over_damage_no_unfinished_job_depends_on(queue, qpath):
    """Damage under a finished job, or quarantined before it was indexed, is reported: exit 0."""
    ids = queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2)])
    run_burst(queue)
    flip_byte_in_record(queue, ids[0])  # under a succeeded job
    late = queue.enqueue_many("jobtasks:add", [(3, 3), (4, 4)])
    _flip_unindexed_first_record_after(queue, ids[1])
    queue.counts()  # indexing quarantines it: no job was ever indexed there
    assert len(queue.store.quarantined()) == 1 and late[0] not in set(queue.store.job_ids())
    done = _jobq("verify", "--dir", str(qpath))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "damaged log ranges 2, none under a job that is not finished" in done.stdout
    assert "verify: OK" in done.stdout
    report = json.loads(_jobq("verify", "--dir", str(qpath), "--json").stdout)
    assert (report["ok"], report["jobs_unreadable"], report["damaged_ranges"]) == (True, 0, 2)
    assert sorted(r["saved_to"] is None for r in report["ranges"]) == [False, True]


def test_cli_verify_documents_its_exit_status_and_exits_2_without_a_queue(tmp_path):
    """--help says what 0, 1 and 2 mean; no queue at --dir is exit 2, not 'damage found'."""
    text = _jobq("verify", "--help").stdout
    assert "exit status:" in text and all(f"\n  {n} " in text for n in (0, 1, 2))
    done = _jobq("verify", "--dir", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no queue at" in done.stderr


def _flip_unindexed_first_record_after(queue: Queue, job_id: str) -> None:
    """Damage the record that follows ``job_id``'s (appended but not indexed yet)."""
    pos = queue.store.payload_position(job_id)
    frame = queue.log.read(pos)
    with open(queue.log.path(pos.segment), "r+b") as f:
        f.seek(pos.offset + frame.size + 40)
        byte = f.read(1)
        f.seek(pos.offset + frame.size + 40)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_jobs_in_a_cut_segment_are_each_named(qpath):
    """A sealed segment cut inside one record: that job and the ones after it are unreadable."""
    with Queue(qpath, segment_size=1200) as q:
        ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(4)])  # one write, segment 1
        later = q.enqueue_many("jobtasks:add", [(9, 9)])  # segment 2: segment 1 is sealed
        q.counts()
        offsets = [q.store.payload_position(j).offset for j in ids]
        assert q.store.payload_position(later[0]).segment == 2
        os.truncate(q.log.path(1), offsets[1] + 30)
        report = verify(q)
    assert not report.ok and (report.jobs_checked, report.jobs_unreadable) == (5, 3)
    assert [(j["job_id"], j["offset"]) for j in report.unreadable] == list(
        zip(ids[1:], offsets[1:]))
    assert [j["reason"] for j in report.unreadable] == [
        "incomplete record at the end of the segment", "no record starts there",
        "no record starts there"]
    assert (report.damaged_ranges, report.ranges_under_jobs) == (1, 1)


def test_running_and_failed_jobs_depend_on_their_records_too(queue):
    """Every status that is not finished is checked; a finished job's damage passes."""
    running = queue.enqueue("jobtasks:add", 1, 1)
    failed = queue.enqueue_call("jobtasks:boom", max_attempts=3)
    succeeded = queue.enqueue("jobtasks:add", 2, 2)
    queue.enqueue("jobtasks:add", 3, 3)  # so that the damage above is not the log's tail
    assert [c.job_id for c in queue.store.claim("elsewhere", 1)] == [running]
    run_burst(queue, retry_delay=lambda attempt: 3600.0)  # the failed job waits for its retry
    for jid in (running, failed, succeeded):
        flip_byte_in_record(queue, jid)
    report = verify(queue)
    assert [(j["job_id"], j["status"]) for j in report.unreadable] == [
        (running, "running"), (failed, "failed")]
    assert (report.jobs_checked, report.damaged_ranges, report.ranges_under_jobs) == (2, 3, 2)
