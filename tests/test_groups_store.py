"""A queue directory of store schema 5 (golden/queue_store5.md, written before groups) opens
upgraded to schema 6 with its jobs as they were, and takes a q.map with a final step."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from jobq import Queue, Status
from jobq.local.state_db import STORE_SCHEMA
from jobq.testing import run_burst


def test_a_store_schema_5_queue_opens_upgraded_and_takes_a_map(
        golden_store: Callable[[int], Path], tmp_path: Path) -> None:
    root = golden_store(5)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.counts() == {"queued": 2, "running": 0, "failed": 0, "succeeded": 2,
                              "dead": 1, "cancelled": 1, "waiting": 1}
        assert q.state("waiting").status is Status.WAITING
        out = tmp_path / "then.txt"
        g = q.map("grouptasks:square", range(5), then=("grouptasks:note_then", (str(out),)))
        run_burst(q)
        assert q.result("queued") == 42 and q.result("waiting") == 3
        assert q.gather(g.id) == [0, 1, 4, 9, 16]
        assert out.read_text().split() == [g.id]


def test_an_older_jobq_would_refuse_the_upgraded_file(golden_store: Callable[[int], Path]) -> None:
    """Schema 6 is written on open: a jobq of schema 5 refuses it (it would end members
    without counting them in their groups)."""
    root = golden_store(5)
    Queue(root).close()
    with closing(sqlite3.connect(root / "state.sqlite3")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'groups'").fetchone()
