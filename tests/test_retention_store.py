"""A queue directory of store schema 5 (golden/queue_store5.md, written before retention) opens
upgraded to schema 6 with its jobs, keeps them (no ttl) and takes ttls for new ones; and the
expiry is read on the engine's clock (an injected one here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.local.state_db import STORE_SCHEMA
from jobq.testing import run_burst

COUNTS = {"queued": 2, "running": 0, "failed": 0, "succeeded": 2, "dead": 1, "cancelled": 1,
          "waiting": 1}


def test_a_store_schema_5_queue_opens_upgraded_and_keeps_its_jobs(
        golden_store: Callable[[int], Path]) -> None:
    root = golden_store(5)
    now = [2_000_000_000.0]  # after the copy was made, before its delayed job is due
    with Queue(root, clock=lambda: now[0]) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.counts() == COUNTS
        assert q.engine.parents("waiting") == ["queued"]
        new = q.enqueue_call("jobtasks:add", (1, 1), result_ttl=10)
        assert run_burst(q) == 3  # the copy's queued job, its waiting dependent, the new one
        assert q.result(new, timeout=0) == 2
        now[0] += 9
        assert q.engine.expire(100) == 0
        now[0] += 2
        assert q.engine.expire(100) == 1  # the new job only: the old ones have no ttl
        try:
            q.state(new)
            raise AssertionError("not purged")
        except JobNotFound:
            pass
        assert q.state("succeeded").status is Status.SUCCEEDED
        assert q.result("queued", timeout=0) == 42
    with Queue(root) as q:  # a second open changes nothing
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA
        assert q.counts()["dead"] == 1
