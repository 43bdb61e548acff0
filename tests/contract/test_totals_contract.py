"""The running totals behind /metrics' counters (jobq.totals), on both engines: what each
ended attempt adds, and that they only grow: kept across a reopen and a purge."""

from __future__ import annotations

from jobq import Queue, Status
from jobq.testing import run_burst
from jobq.totals import BUCKETS, histograms
from workers.reaping import crash


def _named(q: Queue) -> dict[str, float]:
    return {name: n for (name, task), n in q.engine.totals().items() if task == ""}


def test_attempts_that_end_add_to_the_totals_and_the_durations(location: str) -> None:
    with Queue(location) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(3)])
        q.enqueue_call("jobtasks:boom", max_attempts=2)
        run_burst(q)
        assert _named(q) == {"enqueued": 4, "succeeded": 3, "retried": 1, "failed": 1}
        found = histograms(q.engine.totals())
        assert set(found) == {"jobtasks:add", "jobtasks:boom"}
        cumulative, count, total = found["jobtasks:add"]
        assert count == 3 and len(cumulative) == len(BUCKETS)
        assert cumulative == sorted(cumulative) and cumulative[-1] <= count
        assert 0 <= total < 60
        assert found["jobtasks:boom"][1] == 2


def test_a_job_whose_worker_died_counts_as_redelivered(location: str) -> None:
    with Queue(location) as q:
        jid = q.enqueue("jobtasks:add", 1, 2)
        claim = q.engine.settle([], "w1:1", 1)[1][0]
        assert claim.job_id == jid
        state = q.engine.finish(jid, claim.token, crash("worker w1 died", claim.token, 3))
        assert state.status is Status.FAILED
        assert _named(q) == {"enqueued": 1, "redelivered": 1}
        run_burst(q)
        assert _named(q) == {"enqueued": 1, "redelivered": 1, "succeeded": 1}


def test_totals_outlive_a_reopen_and_a_purge(location: str) -> None:
    with Queue(location) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(5)])
        run_burst(q)
        before = q.engine.totals()
        assert q.engine.purge(frozenset({Status.SUCCEEDED}), q.engine.now() + 1) == 5
        assert q.engine.totals() == before
    with Queue(location) as q:
        assert q.engine.totals() == before
        assert _named(q)["succeeded"] == 5
