"""The public Queue API: round trips, idempotence, bad input, concurrency and restarts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobq import JobState, Queue, Status
from jobq.errors import (InvalidArgument, InvalidJob, InvalidTask, JobCancelled, JobFailed,
                         JobNotFound, NotPicklable, RecordTooLarge, WaitTimeout)
from jobq.testing import run_burst

import jobtasks
from jobtasks import add


def _log_bytes(qpath: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((qpath / "log").glob("*.log")))


def test_enqueue_run_result_round_trip(queue):
    """enqueue -> state -> run -> wait -> result, with a function object and a reference string."""
    a = queue.enqueue(add, 2, 3)
    b = queue.enqueue("jobtasks:echo", 1, key="v")
    assert isinstance(a, str) and queue.state(a).status is Status.QUEUED
    assert queue.state(a).task == "jobtasks:add"
    assert run_burst(queue) == 2
    assert queue.wait(a).status is Status.SUCCEEDED
    assert queue.result(a) == 5 and queue.result(b) == ((1,), {"key": "v"})


def test_payload_keeps_every_option(queue):
    """enqueue_call stores args, kwargs, priority, max_attempts, timeout and run-at as given."""
    jid = queue.enqueue_call(add, args=(1,), kwargs={"b": 2}, priority=4, delay=60,
                             max_attempts=7, timeout=2.5)
    p = queue.payload(jid)
    assert (p.task, p.args, p.kwargs, p.priority, p.max_attempts, p.timeout) == (
        "jobtasks:add", (1,), {"b": 2}, 4, 7, 2.5)
    assert 59 < p.run_at - p.created_at <= 60.001


def test_enqueue_many_is_one_batch_with_an_id_per_tuple(queue):
    """enqueue_many returns one id per argument tuple, all queued, results in order."""
    ids = queue.enqueue_many(add, [(i, i) for i in range(50)])
    assert len(set(ids)) == 50 and queue.counts()["queued"] == 50
    run_burst(queue)
    assert [queue.result(j) for j in ids] == [2 * i for i in range(50)]
    assert queue.enqueue_many(add, []) == []


def test_higher_priority_runs_first_then_oldest(queue):
    """Jobs run by priority (higher first), and in arrival order within a priority."""
    jobtasks.CALLS.clear()
    for tag, prio in [("low1", 0), ("high1", 5), ("low2", 0), ("mid", 1), ("high2", 5)]:
        queue.enqueue_call(jobtasks.record_call, args=(tag,), priority=prio)
    run_burst(queue)
    assert jobtasks.CALLS == ["high1", "high2", "mid", "low1", "low2"]


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


def test_idempotent_enqueue_with_job_id(queue):
    """A second enqueue with the same job_id returns it and creates no second job."""
    assert queue.enqueue_call(add, args=(1, 2), job_id="nightly-2026-11-24") == "nightly-2026-11-24"
    before = _log_bytes(Path(queue.path))
    assert queue.enqueue_call(add, args=(9, 9), job_id="nightly-2026-11-24") == "nightly-2026-11-24"
    assert _log_bytes(Path(queue.path)) == before
    assert queue.counts()["queued"] == 1 and queue.payload("nightly-2026-11-24").args == (1, 2)


def test_racing_duplicate_job_ids_make_one_job(qpath):
    """Two producers that both miss the existence check still end with one job (first wins)."""
    with Queue(qpath) as a, Queue(qpath) as b:
        first = a.enqueue_call(add, args=(1, 1), job_id="dup")
        # b's index has not seen a's record yet; write the duplicate the way a racing b would.
        frame = b._frame("jobtasks:add", (2, 2), {}, "dup", b._options(0, None, None, None))
        b.log.append([frame])
        assert first == "dup" and b.counts()["queued"] == 1 and b.payload("dup").args == (1, 1)


def test_failures_retry_then_die_keeping_every_error(queue):
    """A failing job is retried up to max_attempts, then dead with one error per attempt."""
    jid = queue.enqueue_call(jobtasks.boom, args=("bad input",), max_attempts=3)
    assert run_burst(queue) == 3
    state = queue.state(jid)
    assert state.status is Status.DEAD and state.attempts == 3 and len(state.errors) == 3
    assert "ValueError: bad input" in state.error and "Traceback" in state.error
    with pytest.raises(JobFailed, match="ValueError: bad input") as info:
        queue.result(jid)
    assert info.value.job_id == jid and "Traceback" in info.value.error


def test_retry_brings_a_dead_job_back(queue, tmp_path):
    """q.retry re-queues a dead job with a fresh attempt budget; other statuses return False."""
    fixed = tmp_path / "dependency-fixed"
    jid = queue.enqueue_call(jobtasks.fail_unless_exists, args=(str(fixed),), max_attempts=2)
    run_burst(queue)
    assert queue.state(jid).status is Status.DEAD and queue.state(jid).attempts == 2
    fixed.touch()
    assert queue.retry(jid) is True
    state = queue.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.QUEUED, 0, 2)
    run_burst(queue)
    assert queue.result(jid) == "fixed" and queue.state(jid).attempts == 1
    assert queue.retry(jid) is False  # succeeded jobs are not retried


def test_cancel_queued_job_never_runs(queue):
    """A cancelled queued job is never claimed and result() raises JobCancelled."""
    jobtasks.CALLS.clear()
    jid = queue.enqueue(jobtasks.record_call, "x")
    assert queue.cancel(jid) is True and queue.state(jid).status is Status.CANCELLED
    assert run_burst(queue) == 0 and jobtasks.CALLS == []
    with pytest.raises(JobCancelled):
        queue.result(jid)
    assert queue.cancel(jid) is False


def test_cancel_delayed_job(qpath):
    """A delayed job can be cancelled before it is due."""
    now = [5_000.0]
    with Queue(qpath, clock=lambda: now[0]) as q:
        jid = q.enqueue_call(add, args=(1, 1), delay=10)
        assert q.cancel(jid) is True
        now[0] += 20
        assert run_burst(q) == 0 and q.state(jid).status is Status.CANCELLED


def test_counts_and_jobs_listing(queue):
    """counts() has every status; jobs() lists states in enqueue order, filtered by status."""
    ok = queue.enqueue(add, 1, 1)
    bad = queue.enqueue_call(jobtasks.boom, max_attempts=1)
    waiting = queue.enqueue_call(add, args=(0, 0), delay=3600)
    run_burst(queue)
    assert queue.counts() == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                              "cancelled": 0}
    assert [s.job_id for s in queue.jobs()] == [ok, bad, waiting]
    assert [s.job_id for s in queue.jobs("dead")] == [bad]
    assert [s.job_id for s in queue.jobs(Status.SUCCEEDED)] == [ok]
    assert all(isinstance(s, JobState) for s in queue.jobs())
    with pytest.raises(InvalidArgument, match="unknown status"):
        list(queue.jobs("finished"))


def test_wait_times_out_and_unknown_ids_are_not_found(queue):
    """wait() raises a TimeoutError subclass; unknown ids raise JobNotFound (a KeyError)."""
    jid = queue.enqueue(add, 1, 1)
    with pytest.raises(WaitTimeout) as info:
        queue.wait(jid, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    for call in (queue.state, queue.wait, queue.result, queue.cancel, queue.retry, queue.payload):
        with pytest.raises(JobNotFound) as missing:
            call("no-such-job")
        assert isinstance(missing.value, KeyError) and str(missing.value) == "no job with id 'no-such-job'"


def test_results_cross_processes(queue, children):
    """A job enqueued here is run by another process and its result read back here."""
    jid = queue.enqueue(add, 20, 22)
    code = ("import sys; from jobq import Queue; from jobq.testing import run_burst;"
            "q = Queue(sys.argv[1]); print(run_burst(q))")
    done = children.run(code, queue.path)
    assert done.returncode == 0, done.stderr
    assert queue.wait(jid, timeout=10).status is Status.SUCCEEDED and queue.result(jid) == 42


def _nested():
    return 1


@pytest.mark.parametrize("call", [
    lambda q: q.enqueue(lambda: 1),
    lambda q: q.enqueue(_nested_holder()),
    lambda q: q.enqueue("jobtasks:no_such_function"),
    lambda q: q.enqueue("no_such_module_xyz:f"),
    lambda q: q.enqueue("jobtasks.add"),
    lambda q: q.enqueue(42),
    lambda q: q.enqueue(add, lambda: 1),
    lambda q: q.enqueue_call(add, args=(1, 2), delay=-1),
    lambda q: q.enqueue_call(add, args=(1, 2), delay=float("nan")),
    lambda q: q.enqueue_call(add, args=(1, 2), max_attempts=0),
    lambda q: q.enqueue_call(add, args=(1, 2), max_attempts=1.5),
    lambda q: q.enqueue_call(add, args=(1, 2), timeout=0),
    lambda q: q.enqueue_call(add, args=(1, 2), priority="high"),
    lambda q: q.enqueue_call(add, args="12"),
    lambda q: q.enqueue_call(add, args=(1, 2), kwargs=[("b", 1)]),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id=""),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id="x" * 201),
    lambda q: q.enqueue_call(add, args=(1, 2), job_id="bad\nid"),
    lambda q: q.enqueue_many(add, [(1, 2), 3]),
    lambda q: q.enqueue_many(add, [(1, 2), (lambda: 0,)]),
    lambda q: q.enqueue(add, b"x" * (1 << 20)),
], ids=["lambda", "nested", "missing-attr", "missing-module", "dotted-ref", "not-callable",
        "unpicklable-arg", "negative-delay", "nan-delay", "zero-attempts", "float-attempts",
        "zero-timeout", "str-priority", "str-args", "list-kwargs", "empty-id", "long-id",
        "newline-id", "batch-not-tuple", "batch-unpicklable", "too-large"])
def test_bad_input_fails_at_enqueue_and_writes_nothing(qpath, call):
    """Every bad enqueue raises an InvalidJob subclass and leaves the log exactly as it was."""
    with Queue(qpath, max_record_size=512 * 1024) as q:
        q.enqueue(add, 1, 1)
        before = _log_bytes(qpath)
        with pytest.raises(InvalidJob):
            call(q)
        assert _log_bytes(qpath) == before and q.counts()["queued"] == 1


@pytest.mark.parametrize("call", [
    lambda q: q.enqueue(add, 1, 2),
    lambda q: q.enqueue_call(add, args=(1, 2)),
    lambda q: q.enqueue_many(add, [(1, 2)]),
], ids=["enqueue", "enqueue_call", "enqueue_many"])
def test_default_max_attempts_out_of_range_fails_each_enqueue(qpath, call):
    """A default_max_attempts the record cannot hold is refused by every enqueue, as before the
    default options were validated once per queue."""
    with Queue(qpath, default_max_attempts=2**31) as q:
        with pytest.raises(InvalidJob, match="max_attempts"):
            call(q)
        assert q.counts()["queued"] == 0


def _nested_holder():
    def inner():
        return 1
    return inner


def test_specific_error_types(queue):
    """Bad tasks, unpicklable args and oversized jobs have their own error types."""
    with pytest.raises(InvalidTask, match="lambda"):
        queue.enqueue(lambda: 1)
    with pytest.raises(NotPicklable):
        queue.enqueue(add, lambda: 1, 2)
    with Queue(queue.path + "-small", max_record_size=1000) as small, \
            pytest.raises(RecordTooLarge):
        small.enqueue(add, "x" * 2000, 1)


def test_four_producer_processes_lose_and_duplicate_nothing(queue, children):
    """4 processes x 2,000 durable enqueues: every acknowledged id is in the queue exactly once."""
    code = ("import sys, json; from jobq import Queue; q = Queue(sys.argv[1]);"
            "ids = [q.enqueue('jobtasks:add', int(sys.argv[2]), i) for i in range(2000)];"
            "print(json.dumps(ids))")
    procs = [children.start(code, queue.path, str(n)) for n in range(4)]
    acknowledged = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        acknowledged += json.loads(out)
    assert len(acknowledged) == len(set(acknowledged)) == 8000
    listed = [s.job_id for s in queue.jobs()]
    assert len(listed) == 8000 and set(listed) == set(acknowledged)
    assert queue.store.quarantined() == []
    for n in range(4):  # each producer's own jobs are in its own order
        mine = [queue.payload(j).args for j in listed if queue.payload(j).args[0] == n]
        assert mine == [(n, i) for i in range(2000)]


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


def test_generated_job_ids_sort_in_the_order_they_were_made(queue):
    """Later ids sort later (claims then sit side by side in the state database's indexes),
    and they stay unique across a batch and single calls."""
    ids = [queue.enqueue(add, 1, 1) for _ in range(50)] + queue.enqueue_many(add, [(1, 1)] * 500)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    singles = ids[:50]
    assert singles == sorted(singles)


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
