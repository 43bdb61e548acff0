"""Result retention (result_ttl, failure_ttl) on every engine: finished jobs past their ttl are
purged by a worker's upkeep, dead ones are kept by their own ttl, None keeps, bad ttls are
refused. Real (short) ttls: PostgreSQL takes its time from the server's clock."""

from __future__ import annotations

import math
import time

import pytest

from jobq import Queue, Status
from jobq.errors import ConfigError, InvalidJob, JobNotFound
from jobq.testing import run_burst
from workers import Worker

TTL = 0.5


def gone(q: Queue, job_id: str) -> bool:
    try:
        q.state(job_id)
    except JobNotFound:
        return True
    return False


def upkeep_later(q: Queue) -> None:
    """Let TTL pass, then run a burst worker: its first turn runs the upkeep."""
    time.sleep(TTL + 0.3)
    Worker(q).run(burst=True)


def test_finished_jobs_past_result_ttl_are_purged_and_dead_ones_kept_by_failure_ttl(
        q: Queue) -> None:
    ok = q.enqueue_call("jobtasks:add", (1, 2), result_ttl=TTL)
    cancelled = q.enqueue_call("jobtasks:add", (1, 2), result_ttl=TTL, delay=3600)
    q.cancel(cancelled)
    dead_kept = q.enqueue_call("jobtasks:boom", max_attempts=1, result_ttl=TTL,
                               failure_ttl=3600)
    dead_gone = q.enqueue_call("jobtasks:boom", max_attempts=1, failure_ttl=TTL)
    forever = q.enqueue_call("jobtasks:add", (2, 2), result_ttl=None)
    plain = q.enqueue("jobtasks:add", 3, 3)
    many = q.enqueue_many("jobtasks:add", [(1, 1), (2, 2)], result_ttl=TTL)
    run_burst(q)
    assert q.result(ok) == 3 and q.result(many[1]) == 4  # readable until the ttl passes
    upkeep_later(q)
    for job_id in (ok, cancelled, dead_gone, *many):
        assert gone(q, job_id), job_id
    assert q.state(dead_kept).status is Status.DEAD
    assert q.result(forever) == 4 and q.result(plain) == 6
    assert q.counts()["succeeded"] == 2 and q.counts()["dead"] == 1
    assert q.counts()["cancelled"] == 0


def test_unfinished_and_retried_jobs_are_not_purged(q: Queue) -> None:
    """The ttl counts from the job's end: a waiting job, and a dead one retried (its expiry
    cleared), stay."""
    queued = q.enqueue_call("jobtasks:add", (1, 2), result_ttl=0, delay=3600)
    dead = q.enqueue_call("jobtasks:boom", max_attempts=1, failure_ttl=TTL)
    run_burst(q)
    assert q.retry(dead)
    time.sleep(TTL + 0.3)
    assert q.engine.expire(100) == 0  # (a worker would run the retried job)
    assert q.state(queued).status is Status.QUEUED
    assert q.state(dead).status is Status.QUEUED


def test_the_queue_default_applies_and_a_job_may_keep_forever(location: str) -> None:
    with Queue(location, result_ttl=TTL) as q:
        plain = q.enqueue("jobtasks:add", 1, 1)
        kept = q.enqueue_call("jobtasks:add", (1, 2), result_ttl=None)
        dead = q.enqueue_call("jobtasks:boom", max_attempts=1)  # failure_ttl: forever
        run_burst(q)
        upkeep_later(q)
        assert gone(q, plain)
        assert q.result(kept) == 3 and q.state(dead).status is Status.DEAD


def test_after_a_purge_the_job_id_can_be_used_again(q: Queue) -> None:
    q.enqueue_call("jobtasks:add", (1, 2), job_id="reused", result_ttl=TTL)
    run_burst(q)
    assert q.enqueue_call("jobtasks:add", (5, 5), job_id="reused") == "reused"  # deduped
    upkeep_later(q)
    assert gone(q, "reused")
    assert q.enqueue_call("jobtasks:add", (5, 5), job_id="reused") == "reused"
    assert q.state("reused").status is Status.QUEUED
    run_burst(q)
    assert q.result("reused") == 10


def test_a_parent_is_kept_past_its_ttl_while_its_dependent_has_not_run(q: Queue) -> None:
    parent = q.enqueue_call("jobtasks:add", (2, 3), result_ttl=TTL)
    child = q.enqueue_call("jobtasks_extra:parents_seen", ("c",), depends_on=[parent],
                           result_ttl=TTL)
    run_burst(q, max_jobs=1)  # the parent only
    assert q.state(child).status is Status.QUEUED
    time.sleep(TTL + 0.3)
    assert q.engine.expire(100) == 0
    assert q.result(parent) == 5
    run_burst(q)
    assert q.result(child) == ("c", [5])


@pytest.mark.parametrize("bad", [-1, -0.5, "10", True, math.nan, math.inf, [1]],
                         ids=lambda v: f"ttl={v!r}")
def test_bad_ttls_are_refused_and_nothing_is_stored(q: Queue, location: str, bad: object
                                                   ) -> None:
    for name in ("result_ttl", "failure_ttl"):
        with pytest.raises(InvalidJob, match=name):
            q.enqueue_call("jobtasks:add", (1, 2), **{name: bad})
        with pytest.raises(InvalidJob, match=name):
            q.enqueue_many("jobtasks:add", [(1, 2)], **{name: bad})
        with pytest.raises(ConfigError, match=name):
            Queue(location, **{name: bad})
    assert sum(q.counts().values()) == 0
