"""A queue directory of store schema 5 (golden/queue_store5.md, written before job_totals)
opens upgraded, its totals counted from the jobs it keeps, and counted on from there; an index
rebuilt counts them again from the log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobq import Queue
from jobq.local.state_db import STORE_SCHEMA
from jobq.testing import run_burst


def test_a_store_schema_5_queue_opens_with_its_totals_counted(
        golden_store: Callable[[int], Path]) -> None:
    root = golden_store(5)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.engine.totals() == {("enqueued", ""): 7, ("succeeded", ""): 2,
                                     ("failed", ""): 1}
        run_burst(q)  # "queued", then "waiting" released by it
        assert q.engine.totals()[("succeeded", "")] == 4
    with Queue(root) as q:
        assert q.engine.totals()[("succeeded", "")] == 4


def test_a_rebuilt_index_counts_the_totals_again(tmp_path: Path) -> None:
    root = tmp_path / "q"
    with Queue(root) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(3)])
        run_burst(q)
    (root / "state.sqlite3").unlink()
    with Queue(root) as q:
        assert q.engine.totals()[("enqueued", "")] == 3
