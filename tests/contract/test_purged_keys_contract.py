"""A purged job takes its keys with it, on every engine and whichever way it was purged (by age,
by id, by expiry): its unique key is free again, as RQ and Celery users expect once the job is
gone, and its id, used again, does not inherit the old job's unique or concurrency key."""

from __future__ import annotations

import time

import pytest

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.testing import run_burst

FINISHED = frozenset({Status.SUCCEEDED})


def purge(q: Queue, way: str, job_id: str) -> None:
    if way == "age":
        assert q.engine.purge(FINISHED, q.engine.now() + 1) == 1
    elif way == "ids":
        assert q.engine.purge_jobs([job_id], FINISHED) == 1
    else:
        time.sleep(0.05)  # its ttl (0) counts from its end, on the engine's clock
        assert q.engine.expire(100) == 1
    with pytest.raises(JobNotFound):
        q.state(job_id)


@pytest.mark.parametrize("way", ["age", "ids", "expiry"])
def test_a_purged_job_leaves_no_keys_behind(q: Queue, way: str) -> None:
    ttl = {"result_ttl": 0} if way == "expiry" else {}
    old = q.enqueue_call("jobtasks:add", (1, 1), unique_key="u", concurrency_key="api", **ttl)
    run_burst(q)
    purge(q, way, old)
    assert q.enqueue_call("jobtasks:add", (2, 2), job_id=old) == old  # the id, used again
    fresh = q.enqueue_call("jobtasks:add", (3, 3), unique_key="u")
    assert fresh != old  # the key is free again: the new job of the old id does not hold it
    q.set_limit("api", concurrency=1)
    keyed = q.enqueue_call("jobtasks:add", (4, 4), concurrency_key="api")
    claimed = [c.job_id for c in q.engine.settle([], "w", 10)[1]]
    assert sorted(claimed) == sorted([old, fresh, keyed])  # nor does it count under "api"
