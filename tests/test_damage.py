"""A job whose log record is damaged never heals: it is set aside as dead at once, with the
damage and the quarantined copy named, without spending its attempts or waiting for retries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import child_env, jobq_command

from jobq import Queue
from jobq.state import Status
from jobq.testing import run_burst
from workers import Worker


def flip_byte_in_record(queue: Queue, job_id: str, into: int = 40) -> tuple[str, int]:
    """Change one byte inside the body of ``job_id``'s record; return its file and offset."""
    pos = queue.store.payload_position(job_id)
    path = queue.log.path(pos.segment)
    with open(path, "r+b") as f:
        f.seek(pos.offset + into)
        byte = f.read(1)
        f.seek(pos.offset + into)
        f.write(bytes([byte[0] ^ 0xFF]))
    return path, pos.offset


def three_jobs_second_damaged(queue: Queue) -> tuple[list[str], str, int]:
    ids = queue.enqueue_many("jobtasks:add", [(1, 1), (2, 2), (3, 3)])
    queue.counts()  # indexed before the damage: the index points at the damaged record
    path, offset = flip_byte_in_record(queue, ids[1])
    return ids, path, offset


def test_burst_runner_sets_a_damaged_job_aside_at_once(queue):
    """One claim, no retries: dead with attempts unspent, the reason naming file, offset, copy."""
    ids, path, offset = three_jobs_second_damaged(queue)
    with open(path, "rb") as f:
        original = f.read()

    assert run_burst(queue) == 3  # one attempt each: the damaged job is not retried
    state = queue.state(ids[1])
    assert state.status is Status.DEAD and state.attempts == 0
    copy = str(Path(queue.path) / "quarantine" / f"{1:012d}-{offset:012d}.bad")
    assert state.error == (f"payload record damaged at {path}:{offset}: body checksum mismatch;"
                           f" copy at {copy}")
    assert state.errors == [state.error]
    assert [queue.result(ids[0]), queue.result(ids[2])] == [2, 6]
    (row,) = queue.store.quarantined()
    assert (row["segment"], row["offset"], row["saved_to"]) == (1, offset, copy)
    # The copy holds the damaged record's bytes, up to the next record.
    next_record = queue.store.payload_position(ids[2]).offset
    assert Path(copy).read_bytes() == original[offset:next_record]


def test_setting_aside_twice_keeps_one_copy_and_one_quarantine_row(queue):
    """A retried damaged job is set aside again the same way; the copy and its row stay single."""
    ids, _, _ = three_jobs_second_damaged(queue)
    run_burst(queue)
    first = queue.state(ids[1]).error
    assert queue.retry(ids[1])
    assert run_burst(queue) == 1
    state = queue.state(ids[1])
    assert state.status is Status.DEAD and state.errors == [first, first]
    assert len(queue.store.quarantined()) == 1
    assert len(list((Path(queue.path) / "quarantine").iterdir())) == 1


def test_worker_child_sets_a_damaged_job_aside_at_once(queue):
    """Through a real worker and its forked child: dead after one claim, attempts unspent."""
    ids, path, offset = three_jobs_second_damaged(queue)
    processed = Worker(queue, retry_base=30.0).run(burst=True)  # a retry would wait 15-30 s
    assert processed == 3
    state = queue.state(ids[1])
    assert state.status is Status.DEAD and state.attempts == 0
    assert state.error.startswith(f"payload record damaged at {path}:{offset}:")
    assert "quarantine" in state.error.split("; copy at ")[1]
    assert queue.counts()["succeeded"] == 2


def test_a_job_that_cannot_be_loaded_for_another_reason_still_retries(queue, tmp_path,
                                                                     monkeypatch):
    """An unknown class is not damage (a deploy may bring it back): attempts and backoff apply."""
    (tmp_path / "vanishing_args.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing_args
    jid = queue.enqueue_call("jobtasks:echo", args=(vanishing_args.Thing(),), max_attempts=2)
    monkeypatch.delitem(__import__("sys").modules, "vanishing_args")
    (tmp_path / "vanishing_args.py").unlink()
    assert run_burst(queue) == 2
    state = queue.state(jid)
    assert state.status is Status.DEAD and state.attempts == 2
    assert all(e.startswith("cannot load job:") for e in state.errors)
    assert queue.store.quarantined() == []


def test_show_names_the_damage_and_the_quarantined_copy(queue, qpath):
    """`jobq show` of a damaged job says so and where the copy is, before and after a worker."""
    ids, path, offset = three_jobs_second_damaged(queue)
    copy = str(qpath / "quarantine" / f"{1:012d}-{offset:012d}.bad")

    def show() -> str:
        done = subprocess.run([*jobq_command(), "show", "--dir", str(qpath), ids[1]],
                              env=child_env(), text=True, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = show()
    assert "status       queued" in before
    assert f"record damaged at {path}:{offset}: body checksum mismatch" in before
    assert f"copy at {copy}" in before and Path(copy).exists()
    run_burst(queue)
    after = show()
    assert "status       dead" in after
    assert f"record damaged at {path}:{offset}: body checksum mismatch" in after
    assert f"copy at {copy}" in after


def test_jobs_of_a_cut_segment_are_set_aside_at_once(qpath):
    """A record cut short, and records past the cut, are damage too: dead at once, each named."""
    with Queue(qpath, segment_size=1200) as q:
        ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(4)])
        q.enqueue_many("jobtasks:add", [(9, 9)])  # segment 2: segment 1 is sealed
        q.counts()
        cut = q.store.payload_position(ids[2]).offset + 30
        os.truncate(q.log.path(1), cut)
        assert run_burst(q) == 5
        states = [q.state(j) for j in ids]
        assert [s.status for s in states] == [Status.SUCCEEDED, Status.SUCCEEDED, Status.DEAD,
                                              Status.DEAD]
        assert [s.attempts for s in states[2:]] == [0, 0]
        assert all(": truncated; copy at " in s.error for s in states[2:])
        copies = {r["offset"]: r["saved_to"] for r in q.store.quarantined()}
        # The copy ends at the last byte that is not zero (where the reader sees a segment's
        # data end), and the cut may leave a zero byte of the pickle last.
        torn = Path(q.log.path(1)).read_bytes()[cut - 30:]
        assert Path(copies[cut - 30]).read_bytes() == torn.rstrip(b"\0")
