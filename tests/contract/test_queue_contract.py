"""What ``Queue`` promises, on every engine (the ``location`` fixture: one run per engine, the
public API only): enqueue, read, run, order, delays, ids, many producers."""

from __future__ import annotations

import itertools
import json
import time

import pytest

import jobtasks
from jobq import JobState, Queue, Status
from jobq.errors import (InvalidArgument, JobNotFound, SignatureMismatch, StaleClaim,
                         WaitTimeout)
from jobq.execution import run_claim
from jobq.batches import BATCH
from jobq.testing import run_burst
from jobtasks import add

ADD, BOOM = "jobtasks:add", "jobtasks:boom"


def test_an_enqueued_job_runs_once_and_keeps_its_result(q: Queue):
    jid = q.enqueue(jobtasks.add, 2, 3)
    assert q.state(jid).status is Status.QUEUED
    assert q.payload(jid).args == (2, 3)
    assert run_burst(q) == 1
    state = q.state(jid)
    assert (state.status, state.result, state.attempts) == (Status.SUCCEEDED, 5, 1)
    assert q.result(jid, timeout=5) == 5
    assert run_burst(q) == 0  # nothing runs twice


def test_enqueue_run_result_round_trip(q: Queue):
    """enqueue -> state -> run -> wait -> result, with a function object and a reference string."""
    a = q.enqueue(add, 2, 3)
    b = q.enqueue("jobtasks:echo", 1, key="v")
    assert isinstance(a, str) and q.state(a).status is Status.QUEUED
    assert q.state(a).task == "jobtasks:add"
    assert run_burst(q) == 2
    assert q.wait(a).status is Status.SUCCEEDED
    assert q.result(a) == 5 and q.result(b) == ((1,), {"key": "v"})


def test_payload_keeps_every_option(q: Queue):
    """enqueue_call stores args, kwargs, priority, max_attempts, timeout and run-at as given."""
    jid = q.enqueue_call(add, args=(1,), kwargs={"b": 2}, priority=4, delay=60,
                         max_attempts=7, timeout=2.5)
    p = q.payload(jid)
    assert (p.task, p.args, p.kwargs, p.priority, p.max_attempts, p.timeout) == (
        "jobtasks:add", (1,), {"b": 2}, 4, 7, 2.5)
    assert 59 < p.run_at - p.created_at <= 60.001


def test_enqueue_many_writes_all_or_nothing(q: Queue):
    ids = q.enqueue_many(jobtasks.add, [(i, i) for i in range(50)])
    assert len(set(ids)) == 50 and q.counts()["queued"] == 50
    with pytest.raises(SignatureMismatch, match=r"args_list\[2\]"):
        q.enqueue_many(jobtasks.add, [(1, 1), (2, 2), (1, 2, 3)])
    assert q.counts()["queued"] == 50  # the refused batch wrote nothing
    assert run_burst(q) == 50
    assert [q.result(j) for j in ids] == [2 * i for i in range(50)]
    assert q.enqueue_many(add, []) == []


def test_enqueue_many_of_several_batches_is_one_write(q: Queue):
    """More jobs than Queue hands the engine at a time (jobq.batches.BATCH): a job that cannot be
    made in the last batch stores none of the batches before it; otherwise all are stored, in
    order, each with its own arguments."""
    n = 2 * BATCH + 500
    with pytest.raises(SignatureMismatch, match=rf"args_list\[{n - 1}\]"):
        q.enqueue_many(jobtasks.add, [(i, i) for i in range(n - 1)] + [(1, 2, 3)])
    assert q.counts()["queued"] == 0
    ids = q.enqueue_many(jobtasks.add, [(i, -i) for i in range(n)])
    assert len(set(ids)) == n and q.counts()["queued"] == n
    assert [s.job_id for s in itertools.islice(q.jobs(), 3)] == ids[:3]
    for i in (0, BATCH - 1, BATCH, 2 * BATCH, n - 1):
        assert q.payload(ids[i]).args == (i, -i)


def test_a_given_job_id_makes_one_job_however_often_it_is_enqueued(q: Queue):
    first = q.enqueue_call(jobtasks.add, (1, 1), job_id="nightly-2026-12-05")
    again = q.enqueue_call(jobtasks.add, (9, 9), job_id="nightly-2026-12-05")
    assert first == again == "nightly-2026-12-05"
    assert q.counts()["queued"] == 1 and q.payload(first).args == (1, 1)
    assert [s.job_id for s in q.jobs()] == [first]  # no second job, not even a hidden one
    run_burst(q)
    assert q.enqueue_call(jobtasks.add, (9, 9), job_id=first) == first  # finished: still one
    assert q.result(first) == 2 and run_burst(q) == 0


def test_jobs_run_by_priority_then_in_arrival_order(q: Queue, tmp_path):
    log = str(tmp_path / "ran")
    for tag, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 1)]:
        q.enqueue_call(jobtasks.note_run, (log, tag), priority=priority)
    run_burst(q)
    with open(log) as f:
        assert f.read().split() == ["b", "d", "f", "a", "c", "e"]


def test_a_delayed_job_waits_until_it_is_due(q: Queue):
    jid = q.enqueue_call(jobtasks.add, (1, 2), delay=0.5)
    soon = q.enqueue(add, 2, 2)
    assert run_burst(q) == 1 and q.state(soon).status is Status.SUCCEEDED
    assert q.state(jid).status is Status.QUEUED
    time.sleep(0.6)
    assert run_burst(q) == 1 and q.result(jid) == 3


def test_a_result_recorded_under_an_old_claim_changes_nothing(q: Queue):
    """Fencing: once a claim is no longer current, its writes are refused."""
    jid = q.enqueue(jobtasks.add, 1, 1)
    _, [claim] = q.engine.settle([], "w", 1)
    run_claim(q.engine, claim, q.config.rules)
    with pytest.raises(StaleClaim):
        q.engine.save_checkpoint(jid, claim.token, "late", 0.5)
    states, _ = q.engine.settle([(jid, claim.token, lambda s, now, n: s)], "w", 0)
    assert states == [None] and q.result(jid) == 2


def test_counts_listing_and_waiting(q: Queue):
    """counts() has every status; jobs() lists states in enqueue order, filtered by status."""
    ok, bad = q.enqueue(jobtasks.add, 1, 1), q.enqueue_call(BOOM, max_attempts=1)
    later = q.enqueue_call(ADD, (0, 0), delay=3600)
    run_burst(q)
    assert q.counts() == {"queued": 1, "running": 0, "failed": 0, "succeeded": 1, "dead": 1,
                          "cancelled": 0}
    assert [s.job_id for s in q.jobs()] == [ok, bad, later]
    assert [s.job_id for s in q.jobs("dead")] == [bad]
    assert [s.job_id for s in q.jobs(Status.SUCCEEDED)] == [ok]
    assert all(isinstance(s, JobState) for s in q.jobs())
    with pytest.raises(InvalidArgument, match="unknown status"):
        list(q.jobs("finished"))
    assert isinstance(q.wait(ok, timeout=1), JobState)
    with pytest.raises(WaitTimeout):
        q.wait(later, timeout=0.05)


def test_wait_times_out_and_unknown_ids_are_not_found(q: Queue):
    """wait() raises a TimeoutError subclass; unknown ids raise JobNotFound (a KeyError)."""
    jid = q.enqueue(add, 1, 1)
    with pytest.raises(WaitTimeout) as info:
        q.wait(jid, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    for call in (q.state, q.wait, q.result, q.cancel, q.retry, q.payload):
        with pytest.raises(JobNotFound) as missing:
            call("no-such-job")
        assert isinstance(missing.value, KeyError)
        assert str(missing.value) == "no job with id 'no-such-job'"


def test_results_cross_processes(q: Queue, location: str, children):
    """A job enqueued here is run by another process and its result read back here."""
    jid = q.enqueue(add, 20, 22)
    code = ("import sys; from jobq import Queue; from jobq.testing import run_burst;"
            "q = Queue(sys.argv[1]); print(run_burst(q))")
    done = children.run(code, location)
    assert done.returncode == 0, done.stderr
    assert q.wait(jid, timeout=10).status is Status.SUCCEEDED and q.result(jid) == 42


def test_generated_job_ids_sort_in_the_order_they_were_made(q: Queue):
    """Later ids sort later (claims then sit side by side in the engine's indexes), and they
    stay unique across a batch and single calls."""
    ids = [q.enqueue(add, 1, 1) for _ in range(50)] + q.enqueue_many(add, [(1, 1)] * 500)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    singles = ids[:50]
    assert singles == sorted(singles)


def test_four_producer_processes_lose_and_duplicate_nothing(q: Queue, location: str, children):
    """4 processes x 500 durable enqueues: every acknowledged id is in the queue exactly once,
    each producer's jobs in its own order (500, not 2,000: on PostgreSQL each is a commit of its
    own, and a directory's log rolling over under producers is tests/test_queue.py's)."""
    code = ("import sys, json; from jobq import Queue; q = Queue(sys.argv[1]);"
            "ids = [q.enqueue('jobtasks:add', int(sys.argv[2]), i) for i in range(500)];"
            "print(json.dumps(ids))")
    procs = [children.start(code, location, str(n)) for n in range(4)]
    acknowledged = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        acknowledged += json.loads(out)
    assert len(acknowledged) == len(set(acknowledged)) == 2000
    listed = [s.job_id for s in q.jobs()]
    assert len(listed) == 2000 and set(listed) == set(acknowledged)
    listed_args = [q.payload(j).args for j in listed]
    for n in range(4):  # each producer's own jobs are in its own order
        assert [args for args in listed_args if args[0] == n] == [(n, i) for i in range(500)]
