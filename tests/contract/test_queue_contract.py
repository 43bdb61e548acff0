"""What ``Queue`` promises, on every engine (the ``location`` fixture: one run per engine, the
public API only): enqueue, read, run, retry, cancel, fencing, keys."""

from __future__ import annotations

import time

import pytest

import jobtasks
from jobq import JobState, Queue, Status
from jobq.errors import (InvalidJob, JobFailed, JobNotFound, SignatureMismatch, StaleClaim,
                         WaitTimeout)
from jobq.execution import run_claim
from jobq.testing import run_burst

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


def test_enqueue_many_writes_all_or_nothing(q: Queue):
    ids = q.enqueue_many(jobtasks.add, [(i, i) for i in range(50)])
    assert len(set(ids)) == 50 and q.counts()["queued"] == 50
    with pytest.raises(SignatureMismatch, match=r"args_list\[2\]"):
        q.enqueue_many(jobtasks.add, [(1, 1), (2, 2), (1, 2, 3)])
    assert q.counts()["queued"] == 50  # the refused batch wrote nothing
    assert run_burst(q) == 50
    assert [q.result(j) for j in ids] == [2 * i for i in range(50)]


def test_a_given_job_id_makes_one_job_however_often_it_is_enqueued(q: Queue):
    first = q.enqueue_call(jobtasks.add, (1, 1), job_id="nightly-2026-12-05")
    again = q.enqueue_call(jobtasks.add, (9, 9), job_id="nightly-2026-12-05")
    assert first == again == "nightly-2026-12-05"
    assert q.counts()["queued"] == 1 and q.payload(first).args == (1, 1)
    run_burst(q)
    assert q.enqueue_call(jobtasks.add, (9, 9), job_id=first) == first  # finished: still one
    assert q.result(first) == 2 and run_burst(q) == 0


def test_jobs_run_by_priority_then_in_arrival_order(q: Queue, tmp_path):
    log = str(tmp_path / "ran")
    for tag, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        q.enqueue_call(jobtasks.note_run, (log, tag), priority=priority)
    run_burst(q)
    with open(log) as f:
        assert f.read().split() == ["b", "d", "a", "c", "e"]


def test_a_delayed_job_waits_until_it_is_due(q: Queue):
    jid = q.enqueue_call(jobtasks.add, (1, 2), delay=0.5)
    assert run_burst(q) == 0 and q.state(jid).status is Status.QUEUED
    time.sleep(0.6)
    assert run_burst(q) == 1 and q.result(jid) == 3


def test_a_failing_job_is_retried_then_dead_and_retry_brings_it_back(q: Queue, tmp_path):
    flag = str(tmp_path / "fixed")
    jid = q.enqueue_call(jobtasks.fail_unless_exists, (flag,), max_attempts=2)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.DEAD, 2, 2)
    with pytest.raises(JobFailed, match="after 2 attempt"):
        q.result(jid)
    open(flag, "w").close()  # the cause is fixed: retry with a fresh budget, history kept
    assert q.retry(jid) is True and q.state(jid).status is Status.QUEUED
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.SUCCEEDED, 1, 2)


def test_cancel_ends_a_waiting_job_and_leaves_a_finished_one(q: Queue):
    waiting, done = q.enqueue(jobtasks.add, 1, 1), q.enqueue(jobtasks.add, 2, 2)
    assert q.cancel(waiting) is True
    run_burst(q)
    assert q.state(waiting).status is Status.CANCELLED
    assert q.cancel(done) is False and q.result(done) == 4
    assert q.retry(waiting) is True and run_burst(q) == 1 and q.result(waiting) == 2


def test_a_running_job_asked_to_cancel_sees_it_and_ends_cancelled(q: Queue):
    jid = q.enqueue(jobtasks.wait_for_cancel)
    _, [claim] = q.engine.settle([], "w", 1)
    assert q.state(jid).status is Status.RUNNING
    assert q.cancel(jid) is True
    state = run_claim(q.engine, claim, q.config.rules)
    assert state.status is Status.CANCELLED


def test_checkpoints_are_kept_and_the_next_attempt_resumes_from_them(q: Queue):
    jid = q.enqueue(jobtasks.count_with_checkpoints, 10, crash_at=4)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.result, state.attempts) == (Status.SUCCEEDED, 10, 2)
    assert state.checkpoint == 10 and state.progress == 1.0


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
    ok, bad = q.enqueue(jobtasks.add, 1, 1), q.enqueue_call(BOOM, max_attempts=1)
    later = q.enqueue_call(ADD, (0, 0), delay=3600)
    run_burst(q)
    counts = q.counts()
    assert (counts["succeeded"], counts["dead"], counts["queued"]) == (1, 1, 1)
    assert set(counts) == {s.value for s in Status}
    assert [s.job_id for s in q.jobs()] == [ok, bad, later]
    assert [s.job_id for s in q.jobs("dead")] == [bad]
    assert isinstance(q.wait(ok, timeout=1), JobState)
    with pytest.raises(WaitTimeout):
        q.wait(later, timeout=0.05)


def test_unknown_jobs_and_bad_calls_are_refused_clearly(q: Queue):
    with pytest.raises(JobNotFound):
        q.state("no-such-job")
    with pytest.raises(JobNotFound):
        q.cancel("no-such-job")
    with pytest.raises(SignatureMismatch):
        q.enqueue(jobtasks.add, 1, 2, timeout=5)
    with pytest.raises(InvalidJob):
        q.enqueue_call(jobtasks.add, (1, 2), max_attempts=0)
    assert q.counts()["queued"] == 0


def test_a_signed_queue_is_refused_without_its_key_or_with_another(location: str):
    from jobq.errors import WrongSecretKey
    with Queue(location, secret_key=b"k" * 32) as q:
        jid = q.enqueue(jobtasks.add, 1, 1)
    with pytest.raises(WrongSecretKey):
        Queue(location)
    with pytest.raises(WrongSecretKey):
        Queue(location, secret_key=b"x" * 32)
    with Queue(location, secret_key=b"k" * 32) as q:
        run_burst(q)
        assert q.result(jid) == 2
