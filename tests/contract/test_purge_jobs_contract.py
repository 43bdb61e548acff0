"""Engine.purge_jobs on both engines: given jobs go if their status is one asked for, others
stay, and counts and parents' lists follow."""

from __future__ import annotations

import pytest

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.testing import run_burst


def test_given_finished_jobs_are_purged_and_no_others(location: str) -> None:
    with Queue(location) as q:
        dead = [q.enqueue_call("jobtasks:boom", max_attempts=1) for _ in range(3)]
        ok = q.enqueue("jobtasks:add", 1, 2)
        run_burst(q)
        waiting = q.enqueue("jobtasks:add", 3, 4)
        cancelled = q.enqueue("jobtasks:add", 5, 6)
        q.cancel(cancelled)
        asked = [dead[0], dead[1], ok, waiting, cancelled, "no-such-job", dead[0]]
        assert q.engine.purge_jobs(asked, frozenset({Status.DEAD})) == 2
        for gone in dead[:2]:
            with pytest.raises(JobNotFound):
                q.state(gone)
        assert q.state(dead[2]).status is Status.DEAD
        assert q.result(ok) == 3 and q.state(waiting).status is Status.QUEUED
        assert q.counts()["dead"] == 1 and q.counts()["cancelled"] == 1
        assert q.engine.purge_jobs([cancelled, waiting], frozenset(
            {Status.CANCELLED, Status.QUEUED})) == 1  # never an unfinished one
        assert q.state(waiting).status is Status.QUEUED
        assert q.engine.purge_jobs([], frozenset({Status.DEAD})) == 0
