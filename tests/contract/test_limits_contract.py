"""Limits per key (issue 17) on every engine: concurrency and rate limits hold across claims
and workers, jobs over a limit wait without spending attempts, unique keys return the job
that has not ended."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import wait_until

from jobq import Queue, Status
from jobq.errors import InvalidArgument, InvalidJob
from jobq.limits import Limit
from jobq.transitions import failed, succeeded


def claim(q: Queue, n: int = 10, owner: str = "w") -> list[str]:
    return [c.job_id for c in q.engine.settle([], owner, n)[1]]


def done(q: Queue, job_id: str, owner: str = "w") -> None:
    token = next(h.token for h in q.engine.held() if h.job_id == job_id)
    q.engine.settle([(job_id, token, lambda s, now, _: succeeded(s, None, now))], owner, 0)


# -- concurrency -------------------------------------------------------------------------------

def test_at_most_concurrency_jobs_of_a_key_are_claimed_the_rest_wait_unspent(q: Queue):
    q.set_limit("api", concurrency=2)
    keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(4)]
    plain = q.enqueue_call("jobtasks:add", (9, 9))
    got = claim(q)
    assert sorted(got) == sorted(keyed[:2] + [plain])
    assert claim(q, owner="other") == []  # across claimers: the key is full
    for job_id in keyed[2:]:
        state = q.state(job_id)
        assert state.status is Status.QUEUED and state.attempts == 0
    assert not q.engine.has_ready()
    done(q, keyed[0])
    assert q.engine.has_ready()
    assert claim(q, owner="other") == [keyed[2]]


def test_a_failed_job_of_a_limited_key_is_retried_within_the_limit(q: Queue):
    """A job failed and due for its retry is held back like a queued one, never lost."""
    q.set_limit("api", concurrency=1)
    first = q.enqueue_call("jobtasks:add", (1, 1), concurrency_key="api", max_attempts=3)
    second = q.enqueue_call("jobtasks:add", (2, 2), concurrency_key="api")
    assert claim(q) == [first]
    token = q.engine.held()[0].token
    q.engine.settle([(first, token, lambda s, now, m: failed(s, "boom", now, max_attempts=m,
                                                              retry_delay=0))], "w", 0)
    assert claim(q, 1) == [first]  # older: first again, as without limits
    assert q.state(first).attempts == 2 and q.state(second).attempts == 0
    assert claim(q) == []


def test_jobs_of_a_limited_key_are_started_never_prefetched(q: Queue):
    """A prefetched claim would hold a slot while its child runs the jobs before it."""
    q.set_limit("api", concurrency=3)
    keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(3)]
    plain = [q.enqueue_call("jobtasks:add", (i, 1)) for i in range(3)]
    first = q.engine.settle([], "a", 1, prefetch=5)[1]
    assert [c.job_id for c in first] == [keyed[0], *plain]
    assert [h.started for h in q.engine.held() if h.job_id == keyed[0]] == [True]
    second = q.engine.settle([], "b", 1, prefetch=5)[1]
    assert [c.job_id for c in second] == [keyed[1]]


def test_keys_without_a_limit_and_other_keys_run_unlimited(q: Queue):
    q.set_limit("api", concurrency=1)
    other = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="db") for i in range(3)]
    assert sorted(claim(q)) == sorted(other)


def test_a_limit_set_later_applies_to_jobs_already_queued(q: Queue):
    ids = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(3)]
    q.set_limit("api", concurrency=1)
    assert claim(q) == ids[:1]


def test_removing_a_limit_releases_the_held_jobs(q: Queue):
    q.set_limit("api", concurrency=1)
    ids = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(3)]
    assert claim(q) == ids[:1]
    assert q.limits() == [Limit("api", concurrency=1)]
    assert q.set_limit("api", concurrency=None) is None
    assert q.limits() == []
    assert sorted(claim(q)) == sorted(ids[1:])


def test_remove_limit_forgets_the_key_and_says_whether_it_had_one(q: Queue):
    q.set_limit("api", concurrency=1, rate=5, per=60)
    q.set_limit("mail", rate=2, per=1.0)
    ids = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(3)]
    assert claim(q) == ids[:1]
    assert q.remove_limit("api") is True
    assert q.limits() == [Limit("mail", rate=2, per=1.0)]
    assert sorted(claim(q)) == sorted(ids[1:])
    assert q.remove_limit("api") is False
    with pytest.raises(InvalidArgument, match="limit key"):
        q.remove_limit("")
    assert q.limits() == [Limit("mail", rate=2, per=1.0)]


def test_priority_orders_held_and_plain_jobs_together(q: Queue):
    q.set_limit("api", concurrency=5)
    low = q.enqueue_call("jobtasks:add", (1, 1))
    high = q.enqueue_call("jobtasks:add", (2, 2), concurrency_key="api", priority=5)
    assert claim(q, 1) == [high]
    assert claim(q, 1) == [low]


def test_a_burst_worker_runs_every_job_never_more_than_the_limit_at_once(
        q: Queue, location: str, workers, tmp_path: Path):
    import limits_tasks
    counter = str(tmp_path / "inside")
    q.set_limit("api", concurrency=2)
    ids = [q.enqueue_call("limits_tasks:inside_for", (counter, 0.1), concurrency_key="api")
           for _ in range(8)]
    assert workers(location, "--burst", "-c", "4").wait() == 0
    assert all(q.state(i).status is Status.SUCCEEDED for i in ids)
    assert all(q.state(i).attempts == 1 for i in ids)
    assert 1 <= limits_tasks.highest(counter) <= 2


# -- rate --------------------------------------------------------------------------------------

def test_jobs_over_the_rate_are_postponed_to_the_next_window_not_failed(q: Queue):
    q.set_limit("mail", rate=2, per=1.0)
    ids = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="mail") for i in range(5)]
    first = claim(q)
    assert first == ids[:2]
    assert claim(q) == []
    assert all(q.state(i).status is Status.QUEUED and q.state(i).attempts == 0
               for i in ids[2:])
    second = wait_until(lambda: claim(q), timeout=10)  # the next window
    assert second == ids[2:4]


def test_rate_and_concurrency_combine_on_one_key(q: Queue):
    q.set_limit("api", concurrency=1, rate=10, per=3600)
    ids = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api") for i in range(3)]
    assert claim(q) == ids[:1]
    done(q, ids[0])
    assert claim(q) == ids[1:2]
    assert q.limits() == [Limit("api", concurrency=1, rate=10, per=3600.0)]


# -- unique keys -------------------------------------------------------------------------------

def test_a_unique_key_returns_the_unended_job_and_is_free_once_it_ends(q: Queue):
    first = q.enqueue_call("jobtasks:add", (1, 2), unique_key="invoice-42")
    assert q.enqueue_call("jobtasks:add", (3, 4), unique_key="invoice-42") == first
    assert q.counts()["queued"] == 1
    assert claim(q) == [first]  # running: still held
    assert q.enqueue_call("jobtasks:add", (3, 4), unique_key="invoice-42") == first
    token = q.engine.held()[0].token
    q.engine.settle([(first, token, lambda s, now, m: failed(s, "boom", now, max_attempts=m,
                                                              retry_delay=3600))], "w", 0)
    assert q.state(first).status is Status.FAILED  # waiting for its retry: still held
    assert q.enqueue_call("jobtasks:add", (3, 4), unique_key="invoice-42") == first
    q.cancel(first)
    again = q.enqueue_call("jobtasks:add", (5, 6), unique_key="invoice-42")
    assert again != first
    assert q.payload(again).args == (5, 6)
    assert q.enqueue_call("jobtasks:add", (7, 8), unique_key="invoice-43") != again


def test_a_succeeded_job_frees_its_unique_key(q: Queue):
    first = q.enqueue_call("jobtasks:add", (1, 2), unique_key="k")
    assert claim(q) == [first]
    done(q, first)
    assert q.enqueue_call("jobtasks:add", (1, 2), unique_key="k") != first


_PRODUCER = """
import sys, time
from jobq import Queue
with Queue(sys.argv[1]) as q:
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    print(q.enqueue_call("jobtasks:add", (1, 1), unique_key="race"))
"""


def test_producers_racing_on_a_unique_key_get_the_same_id(q: Queue, location: str, children):
    start = str(time.time() + 1.5)
    procs = [children.start(_PRODUCER, location, start) for _ in range(4)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(out.strip())
    assert len(set(outs)) == 1
    assert q.counts()["queued"] == 1


def test_a_job_id_already_stored_is_returned_with_keys_too(q: Queue):
    q.enqueue_call("jobtasks:add", (1, 1), job_id="fixed")
    assert q.enqueue_call("jobtasks:add", (1, 1), job_id="fixed", unique_key="u") == "fixed"
    assert q.counts()["queued"] == 1


# -- bad values --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"concurrency": 0}, "concurrency must be an integer >= 1"),
    ({"concurrency": -3}, "concurrency must be an integer >= 1"),
    ({"concurrency": 2.5}, "concurrency must be an integer >= 1"),
    ({"concurrency": True}, "concurrency must be an integer >= 1"),
    ({"rate": 10}, "needs its window"),
    ({"per": 60}, "give rate too"),
    ({"rate": 0, "per": 60}, "rate must be an integer >= 1"),
    ({"rate": 5, "per": 0}, "per must be a positive number"),
    ({"rate": 5, "per": float("inf")}, "per must be a positive number"),
], ids=["zero", "negative", "float", "bool", "rate-without-per", "per-without-rate",
        "zero-rate", "zero-per", "infinite-per"])
def test_bad_limits_are_refused_and_store_nothing(q: Queue, kwargs, words):
    with pytest.raises(InvalidArgument, match=words):
        q.set_limit("api", **kwargs)
    assert q.limits() == []


@pytest.mark.parametrize("key", [5, None, b"api", "", "x" * 201, "a\nb"],
                         ids=["int", "none", "bytes", "empty", "long", "newline"])
def test_bad_limit_keys_are_refused(q: Queue, key):
    with pytest.raises(InvalidArgument, match="limit key"):
        q.set_limit(key, concurrency=1)


@pytest.mark.parametrize("option", ["concurrency_key", "unique_key"])
def test_bad_job_keys_are_refused_before_anything_is_stored(q: Queue, option):
    with pytest.raises(InvalidJob, match=f"{option} must be a string"):
        q.enqueue_call("jobtasks:add", (1, 1), **{option: 42})
    with pytest.raises(InvalidJob, match="depends_on"):
        parent = q.enqueue_call("jobtasks:add", (1, 1))
        q.enqueue_call("jobtasks:add", (1, 1), depends_on=[parent], **{option: "k"})
    assert q.counts()["queued"] == 1
