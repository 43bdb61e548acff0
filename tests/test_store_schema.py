"""State databases written by older jobq versions open, read right, and run to the end."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from jobq import Queue, Status
from jobq.local.state_db import STORE_SCHEMA
from workers import Worker

GOLDEN = Path(__file__).parent / "golden" / "queue_store1"


def test_store_schema_1_queue_is_upgraded_in_place_and_every_job_reads_and_runs(tmp_path):
    root = tmp_path / "q"
    shutil.copytree(GOLDEN, root)
    with Queue(root) as q:
        version = q.store.conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == STORE_SCHEMA
        assert q.counts() == {"queued": 2, "running": 1, "failed": 0, "succeeded": 1, "dead": 1,
                              "cancelled": 1}
        done = q.state("succeeded")
        assert (done.status, done.result, done.attempts) == (Status.SUCCEEDED, 5, 1)
        dead = q.state("dead")
        assert dead.status is Status.DEAD and "boom" in dead.errors[0]
        running = q.state("running")
        assert (running.status, running.checkpoint, running.progress) == (Status.RUNNING, 4, 0.4)
        assert running.started_at is not None  # from the snapshot: schema 1 rows had none
        Worker(q).run(burst=True)  # reaps the dead owner's claim, then runs what is due
        resumed = q.state("running")
        assert (resumed.status, resumed.result, resumed.crashes) == (Status.SUCCEEDED, 10, 1)
        assert q.state("queued").result == 42
        assert q.state("delayed").status is Status.QUEUED
        assert q.state("cancelled").status is Status.CANCELLED


def test_a_schema_1_file_is_upgraded_once(tmp_path):
    """The added columns are added once; a second open changes nothing."""
    root = tmp_path / "q"
    shutil.copytree(GOLDEN, root)
    Queue(root).close()
    with closing(sqlite3.connect(root / "state.sqlite3")) as conn:  # a bare `with` never closes
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    Queue(root).close()
    with closing(sqlite3.connect(root / "state.sqlite3")) as conn:
        assert [row[1] for row in conn.execute("PRAGMA table_info(jobs)")] == columns
    assert {"snap", "started_at", "prefetched"} <= set(columns)
