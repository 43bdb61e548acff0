"""Queue on the directory engine: an injected clock, racing producers in the log, segments, the
index a reopen reads, settings fixed when the directory is made, job ids (what Queue promises on
every engine: tests/contract/)."""

from __future__ import annotations

import json
import os

import pytest
from structlog.testing import capture_logs

from jobq import Queue, Status
from jobq.testing import run_burst

from jobtasks import add


def test_delayed_job_waits_for_its_time(qpath):
    """A delayed job is not claimed before its run-at time, and is once the clock reaches it."""
    now = [1_000_000.0]
    with Queue(qpath, clock=lambda: now[0]) as q:
        later = q.enqueue_call(add, args=(1, 1), delay=30)
        soon = q.enqueue(add, 2, 2)
        assert run_burst(q) == 1 and q.state(soon).status is Status.SUCCEEDED
        assert q.state(later).status is Status.QUEUED
        now[0] += 30
        assert run_burst(q) == 1 and q.result(later) == 2


def test_racing_duplicate_job_ids_make_one_job(qpath):
    """Two producers that both miss the existence check still end with one job (first wins)."""
    with Queue(qpath) as a, Queue(qpath) as b:
        first = a.enqueue_call(add, args=(1, 1), job_id="dup")
        # b's index has not seen a's record yet; write the duplicate the way a racing b would.
        frame = b._frame("jobtasks:add", (2, 2), {}, "dup", b._options(0, None, None, None))
        b.log.append([frame])
        assert first == "dup" and b.counts()["queued"] == 1 and b.payload("dup").args == (1, 1)


def test_four_producer_processes_across_small_segments_lose_nothing(qpath, children):
    """Producers that step over one another's records in the zero fill, roll over together
    every few records and mix single and batch appends: every acknowledged job, in order."""
    with Queue(qpath, segment_size=4096):
        pass
    code = ("import sys, json; from jobq import Queue; q = Queue(sys.argv[1]); n = int(sys.argv[2])\n"
            "ids = []\n"
            "for i in range(150):\n"
            "    ids.append(q.enqueue('jobtasks:add', n, 2 * i))\n"
            "    ids += q.enqueue_many('jobtasks:add', [(n, 2 * i + 1)] * (i % 3))\n"
            "print(json.dumps(ids))")
    procs = [children.start(code, str(qpath), str(n)) for n in range(4)]
    acknowledged = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        acknowledged += json.loads(out)
    with Queue(qpath) as q:
        listed = [s.job_id for s in q.jobs()]
        assert len(listed) == len(set(listed)) == len(acknowledged) == 4 * 300
        assert set(listed) == set(acknowledged)
        assert q.store.quarantined() == []
        assert len(q.log.segments()) > 50
        for n in range(4):
            mine = [q.payload(j).args[1] for j in listed if q.payload(j).args[0] == n]
            assert mine == sorted(mine)


def test_restart_does_not_replay_the_log(qpath):
    """Reopening reads only the log after the covered offset, however long the log is."""
    with Queue(qpath) as q:
        q.enqueue_many(add, [(i, i) for i in range(20_000)])
        assert q.counts()["queued"] == 20_000
        covered = q.store.covered()
    # Damage a record deep inside the already-indexed part: a replay would find and quarantine it.
    segment = sorted((qpath / "log").glob("*.log"))[0]
    with open(segment, "r+b") as f:
        f.seek(covered.offset // 2)
        byte = f.read(1)
        f.seek(covered.offset // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with capture_logs() as events, Queue(qpath) as q:
        assert q.store.catch_up() == 0 and q.store.covered() == covered
        assert q.counts()["queued"] == 20_000
    assert events == []


def test_fsync_false_still_round_trips(qpath):
    """The opt-out of fsync changes durability, not behaviour."""
    with Queue(qpath, fsync=False) as q:
        ids = q.enqueue_many(add, [(1, 2), (3, 4)]) + [q.enqueue(add, 5, 6)]
        run_burst(q)
        assert [q.result(j) for j in ids] == [3, 7, 11]


def test_default_directory_comes_from_jobq_home(tmp_path, monkeypatch):
    """Queue() uses $JOBQ_HOME, else ./.jobq in the working directory."""
    monkeypatch.setenv("JOBQ_HOME", str(tmp_path / "home-queue"))
    with Queue() as q:
        assert q.path == str(tmp_path / "home-queue")
    monkeypatch.delenv("JOBQ_HOME")
    monkeypatch.chdir(tmp_path)
    with Queue() as q:
        assert q.path == str(tmp_path / ".jobq") and os.path.isdir(tmp_path / ".jobq" / "log")


def test_segment_size_is_fixed_when_the_queue_is_created(qpath):
    """Later openers use the recorded segment size; asking for another one is refused."""
    from jobq.errors import ConfigError
    with Queue(qpath, segment_size=4096) as first:
        first.enqueue(add, 1, 1)
    with Queue(qpath) as again:
        assert again.config.segment_size == 4096
    with pytest.raises(ConfigError, match="segment_size=4096"):
        Queue(qpath, segment_size=1 << 20)


def test_a_producer_on_a_passed_segment_moves_to_the_newest(qpath):
    """A writer whose segment another writer has moved past appends to the newest one."""
    with Queue(qpath, segment_size=2048) as a, Queue(qpath) as b:
        a.enqueue(add, 0, 0)  # both now write to segment 1
        b.enqueue(add, 0, 1)
        ids = [a.enqueue(add, 1, i) for i in range(40)]  # a rolls on to later segments
        assert len(list((qpath / "log").glob("*.log"))) > 3
        ids.append(b.enqueue(add, 2, 0))  # b's handle is still on segment 1
        assert all(a.state(j).status is Status.QUEUED for j in ids)


def test_payload_checks_the_record_belongs_to_the_job(queue):
    """A position that points at another job's record is an error, not that job's payload."""
    from jobq.errors import CorruptRecord
    first, second = queue.enqueue(add, 1, 1), queue.enqueue(add, 2, 2)
    queue.store.catch_up()
    pos = queue.store.payload_position(first)
    frame = queue.log.read(pos)
    from jobq import job_record
    with pytest.raises(CorruptRecord, match="holds job"):
        job_record.load_payload(frame.body, queue.config.rules, second)


def test_max_record_size_is_fixed_when_the_queue_is_created(qpath):
    """A reader cannot open with a smaller record limit and quarantine valid jobs."""
    from jobq.errors import ConfigError
    with Queue(qpath, max_record_size=1 << 20) as first:
        big = first.enqueue(add, "x" * 100_000, "")
    with pytest.raises(ConfigError, match="max_record_size=1048576"):
        Queue(qpath, max_record_size=10_000)
    with Queue(qpath) as again:
        assert again.config.max_record_size == 1 << 20
        assert again.state(big).status is Status.QUEUED and again.store.quarantined() == []


def test_job_ids_are_random_hex_and_a_forked_child_draws_its_own():
    """Ids are 32 hex digits; a child forked while its parent holds unused random bits never
    reuses them."""
    from jobq.job_ids import job_ids as _job_ids
    first = _job_ids.next()  # the parent now holds a batch of unused ids
    assert len(first) == 32 and int(first, 16) >= 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave without running pytest's teardown
        try:
            os.write(write_end, _job_ids.next().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        child_id = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    # The random halves: the clock halves differ anyway.
    parent_bits = {_job_ids.next()[16:] for _ in range(_job_ids.BATCH)}
    assert len(child_id) == 32 and child_id[16:] not in parent_bits
    assert first[16:] not in parent_bits


def test_a_worker_opens_a_backlog_without_indexing_it_and_claims_index_a_batch(qpath):
    """A queue opened for a worker costs the same whatever the backlog; each claim indexes a
    few claims' worth of it, so the first job runs at once; an ordinary open indexes everything
    first."""
    from jobq.local import index
    from jobq.local.log import Position
    from jobq.local.settle import INDEX_PER_CLAIM_MIN

    with Queue(qpath, fsync=False) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(2 * index.CATCH_UP_BATCH + 10)])
    with Queue._for_worker(qpath) as q:
        assert q.store.covered() == Position(1, 0)  # nothing indexed by opening
        assert q.store.has_ready()  # yet a worker knows there is work
        _, claims = q.store.settle([], "w/1", 1)
        assert len(claims) == 1
        assert q.store.counts()["queued"] == INDEX_PER_CLAIM_MIN - 1  # one batch, one claimed
        # A bigger claim indexes twice what it takes, so the index stays ahead of the claims.
        _, claims = q.store.settle([], "w/1", 1, prefetch=299)
        assert len(claims) == 300
        assert q.store.counts()["queued"] == INDEX_PER_CLAIM_MIN - 1 + 600 - 300
    with Queue(qpath) as q:
        assert q.store.counts()["queued"] == 2 * index.CATCH_UP_BATCH + 10 - 301
