"""A queue directory of store schema 5 (golden/queue_store5.md, written before limits) opens
upgraded to schema 6 with its jobs, and its jobs and new ones run within limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobq import Queue, Status
from jobq.local.state_db import STORE_SCHEMA
from workers import Worker


def test_a_store_schema_5_queue_opens_upgraded_and_takes_limits(
        golden_store: Callable[[int], Path]) -> None:
    root = golden_store(5)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.counts() == {"queued": 2, "running": 0, "failed": 0, "succeeded": 2,
                              "dead": 1, "cancelled": 1, "waiting": 1}
        assert q.limits() == []
        q.set_limit("api", concurrency=1)
        keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api")
                 for i in range(2)]
        assert q.enqueue_call("jobtasks:add", (0, 0), unique_key="u") == \
            q.enqueue_call("jobtasks:add", (0, 0), unique_key="u")
        claimed = [c.job_id for c in q.engine.settle([], "w", 10)[1]]
        assert "queued" in claimed and keyed[0] in claimed and keyed[1] not in claimed
        assert q.state(keyed[1]).status is Status.QUEUED
    with Queue(root) as q:  # a second open changes nothing; the held job runs
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA
        assert q.state("waiting").status is Status.WAITING
        q.set_limit("api", concurrency=None)
        Worker(q).run(burst=True)
        assert q.result(keyed[1]) == 2
