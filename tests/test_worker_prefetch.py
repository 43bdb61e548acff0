"""Prefetching: a worker child holds several claims at once, and those it never started are given
back without charging an attempt when the process holding them dies."""

from __future__ import annotations

import pickle
from pathlib import Path

from structlog.testing import capture_logs

from jobq import Queue, Status
from jobq.local.store import Claim
from workers import Worker, child

from jobtasks import add, kill_own_process
from jobtasks_extra import cancel_job_named_in, touch


def test_claims_beyond_limit_are_marked_not_started_until_reported(queue: Queue):
    queue.enqueue_many(add, [(i, i) for i in range(5)])
    _, claims = queue.store.settle([], "w", 1, prefetch=3)
    assert len(claims) == 4
    started = {job_id: s for job_id, _, _, _, s in queue.store.running_claims()}
    assert [started[c.job_id] for c in claims] == [True, False, False, False]
    queue.store.settle([], "w", 0, started=[(claims[1].job_id, claims[1].token)])
    started = {job_id: s for job_id, _, _, _, s in queue.store.running_claims()}
    assert [started[c.job_id] for c in claims] == [True, True, False, False]
    # A stale token does not mark anything.
    queue.store.settle([], "w", 0, started=[(claims[2].job_id, claims[2].token - 1)])
    assert not {job_id: s for job_id, _, _, _, s in queue.store.running_claims()}[claims[2].job_id]


def test_a_claim_sent_to_a_child_carries_only_what_running_it_needs(queue: Queue):
    jid = queue.enqueue(add, 1, 2)
    claim, = queue.store.claim("w", 1)
    copy = pickle.loads(pickle.dumps(claim))
    assert isinstance(copy, Claim)
    assert (copy.job_id, copy.token, copy.ref) == (jid, claim.token, claim.ref)
    assert (copy.state.attempts, copy.state.status, copy.state.task) == (1, Status.RUNNING,
                                                                         claim.state.task)
    assert len(pickle.dumps(claim)) < 300


def test_prefetched_jobs_behind_a_crashing_one_run_once_and_are_not_charged(queue: Queue):
    """A child that dies holds prefetched claims: only the job it was running is charged."""
    before = queue.enqueue_many(add, [(i, 1) for i in range(5)])  # teach it the jobs are short
    crasher = queue.enqueue_call(kill_own_process, max_attempts=5)
    after = queue.enqueue_many(add, [(i, 2) for i in range(40)])
    with capture_logs() as events:
        Worker(queue, concurrency=1, max_crashes=2).run(burst=True)
    given_back = [e for e in events if e["event"] == "job.released"]
    assert given_back and all("not started" in e["cause"] for e in given_back)  # it prefetched
    crashed = queue.state(crasher)
    assert (crashed.status, crashed.crashes) == (Status.DEAD, 2)
    for job_id in before + after:
        state = queue.state(job_id)
        assert (state.status, state.attempts, state.crashes, state.errors) == \
            (Status.SUCCEEDED, 1, 0, []), job_id


def test_a_dead_workers_unstarted_claims_are_given_back_uncharged(queue: Queue):
    """Another worker reaps a dead one: started claims count a crashed attempt, prefetched ones
    go back to the queue as if never claimed."""
    ids = queue.enqueue_many(add, [(i, 3) for i in range(4)])
    _, claims = queue.store.settle([], "w-that-died", 1, prefetch=3)
    queue.store.settle([], "w-that-died", 0, started=[(claims[1].job_id, claims[1].token)])
    Worker(queue).run(burst=True)
    states = [queue.state(j) for j in ids]
    assert all(s.status is Status.SUCCEEDED for s in states)
    assert [(s.attempts, s.crashes) for s in states] == [(2, 1), (2, 1), (1, 0), (1, 0)]


def test_a_prefetched_job_cancelled_before_it_starts_never_runs(queue: Queue, tmp_path: Path,
                                                                  monkeypatch):
    """The job before the target in the child's batch asks to cancel the target: the target
    never starts, and ends cancelled with no attempt.

    The batch window is made long (forked children inherit it), so that the child's watcher
    cannot give the target back first, as it does behind a job that runs long."""
    monkeypatch.setattr(child, "BATCH_WINDOW", 60.0)
    id_file, target_marker = tmp_path / "target-id", tmp_path / "target"
    queue.enqueue_many(add, [(i, i) for i in range(20)])  # short jobs: the child prefetches
    canceller = queue.enqueue_call(cancel_job_named_in, (str(queue.path), str(id_file)))
    target = queue.enqueue_call(touch, (str(target_marker),))
    id_file.write_text(target)
    Worker(queue, concurrency=1).run(burst=True)
    assert queue.state(canceller).result is True  # the target was not finished when asked
    state = queue.state(target)
    assert not target_marker.exists()
    assert (state.status, state.attempts, state.errors) == (Status.CANCELLED, 0, [])
