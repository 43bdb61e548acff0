"""A queue directory of store schema 4 (golden/queue_store4.md, written before dependencies)
opens upgraded to schema 5 with its jobs, and its jobs can be depended on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobq import Queue, Status
from jobq.local.state_db import STORE_SCHEMA
from workers import Worker


def test_a_store_schema_4_queue_opens_upgraded_and_its_jobs_can_be_depended_on(
        golden_store: Callable[[int], Path]) -> None:
    root = golden_store(4)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.counts() == {"queued": 2, "running": 0, "failed": 0, "succeeded": 2,
                              "dead": 1, "cancelled": 1}
        assert [s.schedule.name for s in q.engine.schedules.all()] == ["every5"]
        after_ok = q.enqueue_call("jobtasks_extra:parents_seen", ("ok",),
                                  depends_on=["succeeded", "succeeded-2"])
        after_dead = q.enqueue_call("jobtasks:add", (1, 1), depends_on=["dead"])
        after_queued = q.enqueue_call("jobtasks_extra:parents_seen", ("q",),
                                      depends_on=["queued"])
        assert q.state(after_ok).status is Status.QUEUED
        assert q.state(after_dead).status is Status.CANCELLED
        assert q.state(after_queued).status is Status.WAITING
        Worker(q).run(burst=True)
        assert q.result("queued") == 42
        assert q.result(after_ok) == ("ok", [5, 7])
        assert q.result(after_queued) == ("q", [42])
    with Queue(root) as q:  # a second open changes nothing
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA
        assert q.engine.parents(after_queued) == ["queued"]
