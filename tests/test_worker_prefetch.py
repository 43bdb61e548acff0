"""Prefetching: a worker child holds several claims at once, and those it never started are given
back without charging an attempt when the process holding them dies: the directory engine's
claims (what runs the jobs is in tests/contract/)."""

from __future__ import annotations

import pickle
from collections import Counter

from jobq import Queue, Status
from jobq.local.store import Claim
from workers import Worker

from jobtasks import add


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


def test_a_child_claims_up_to_the_engines_prefetch_by_default(queue: Queue):
    """500 claims a settle on a directory (issue 19: a settle rewrites whole the pages its jobs'
    rows touch, which more jobs then share), still within the batch's 20 ms of work."""
    assert queue.engine.prefetch == 500
    ids = queue.enqueue_many(add, [(i, i) for i in range(1_200)])
    assert Worker(queue).run(burst=True) == 1_200
    batches = Counter(queue.state(j).started_at for j in ids)  # a batch's claims share it
    assert sum(batches.values()) == 1_200
    assert 100 < max(batches.values()) <= 500
