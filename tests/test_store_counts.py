"""Jobs per status are kept with the transitions, so counts() never counts the jobs kept."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from jobq import listing, Queue, Status, transitions
from jobq.maintenance import compact, purge
from jobq.local.state_db import STORE_SCHEMA
from jobq.testing import run_burst

from jobtasks import add

GOLDEN = Path(__file__).parent / "golden"


def counted(queue: Queue) -> dict[str, int]:
    """The counts as a full count of the jobs table finds them."""
    found = {status.value: 0 for status in Status}
    found.update(queue.store.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    return listing.shown(found)


def succeed(state, now, max_attempts):  # type: ignore[no-untyped-def]
    return transitions.succeeded(state, None, now)


def test_counts_follow_every_kind_of_change(qpath):
    """Index, claim, settle, fail and retry, cancel, requeue, purge, compact and rebuild."""
    q = Queue(qpath)
    try:
        def check() -> None:
            assert q.counts() == counted(q)

        ids = [q.enqueue(add, i, i) for i in range(30)]
        boom = q.enqueue_call("jobtasks:boom", max_attempts=2)
        later = q.enqueue_call(add, (1, 1), delay=3600)
        check()
        assert q.counts()["queued"] == 32
        claims = q.store.claim("w", 10)
        check()
        assert q.counts()["running"] == 10
        q.store.settle([(c.job_id, c.token, succeed) for c in claims[:5]], "w", 3, prefetch=2)
        check()
        q.cancel(claims[5].job_id)  # running: only a flag, still running
        q.cancel(ids[-1])  # waiting: cancelled now
        q.cancel(later)
        check()
        run_burst(q)  # the rest, the failing job until it is dead
        check()
        assert q.counts()["dead"] == 1 and q.counts()["queued"] == 0
        assert q.retry(boom) and q.retry(later)
        check()
        run_burst(q)
        check()
        assert purge(q, statuses=[Status.SUCCEEDED], older_than=0, now=q._clock() + 1) > 0
        check()
        compact(q)
        check()
        q.store.rebuild_index()
        check()
        assert sum(q.counts().values()) == sum(counted(q).values()) > 0
    finally:
        q.close()


def test_counts_stay_right_with_processes_changing_jobs_at_once(qpath, children):
    """Producers, indexers and a worker at once: the kept counts equal a full count after."""
    Queue(qpath).close()
    producer = ("import sys; from jobq import Queue; q = Queue(sys.argv[1]);"
                "[q.enqueue('jobtasks:add', 1, i) for i in range(300)]")
    worker = ("import sys; from jobq import Queue; from jobq.testing import run_burst;"
              "q = Queue(sys.argv[1]); [run_burst(q) for _ in range(20)]")
    procs = [children.start(producer, str(qpath)) for _ in range(2)]
    procs += [children.start(worker, str(qpath)) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Queue(qpath) as q:
        assert q.counts() == counted(q)
        assert sum(q.counts().values()) == 600


@pytest.mark.parametrize("finished", [20, 2_000], ids=lambda n: f"finished={n}")
def test_counts_cost_does_not_grow_with_the_jobs_kept(qpath, finished):
    """counts() runs the same number of SQLite VM steps for 20 or 2,000 finished jobs.

    (A COUNT ... GROUP BY over the jobs table steps once per job, at least.)
    """
    with Queue(qpath) as q:
        q.enqueue_many(add, [(i, i) for i in range(finished)])
        claims = q.store.claim("w", finished)
        q.store.settle([(c.job_id, c.token, succeed) for c in claims], "w", 0)
        q.counts()  # index and cache before measuring
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0  # go on

        conn = q.store.conn
        conn.set_progress_handler(step, 10)
        try:
            counts = q.store.counts()
        finally:
            conn.set_progress_handler(None, 10)
    assert counts["succeeded"] == finished
    # Three rows of job_counts and a seek per waiting or running status take under a hundred VM
    # steps; counting 2,000 finished jobs takes thousands.
    assert steps[0] * 10 < 500, steps[0]


def schema_2_copy(tmp_path: Path) -> Path:
    root = tmp_path / "q"
    shutil.copytree(GOLDEN / "queue_store2", root)
    return root


def test_a_schema_2_store_gets_its_counts_once_and_keeps_them(tmp_path):
    """The golden schema 2 queue (written by jobq before job_counts) opens, upgraded in place:
    the counts are computed once from its jobs, then kept by every transition."""
    root = schema_2_copy(tmp_path)
    with closing(sqlite3.connect(root / "state.sqlite3")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        expected = {"queued": 2, "running": 1, "failed": 0, "succeeded": 2, "dead": 1,
                    "cancelled": 1}
        assert q.counts() == counted(q) == expected
        from workers import Worker
        Worker(q).run(burst=True)  # reaps the dead owner's claim, then runs what is due
        assert q.counts() == counted(q)
        assert q.counts()["succeeded"] == 4 and q.counts()["running"] == 0
        assert q.result("running") == 10 and q.result("queued") == 42
    with Queue(root) as q:  # a second open recomputes nothing and changes nothing
        assert q.counts() == counted(q)


def test_the_schema_1_golden_store_gets_its_counts_too(tmp_path):
    root = tmp_path / "q"
    shutil.copytree(GOLDEN / "queue_store1", root)
    with Queue(root) as q:
        assert q.counts() == counted(q) == {"queued": 2, "running": 1, "failed": 0,
                                            "succeeded": 1, "dead": 1, "cancelled": 1}
        run_burst(q)
        assert q.counts() == counted(q)


@pytest.mark.parametrize("lost", ["DROP TABLE jobs", "DELETE FROM jobs", "DROP TABLE job_counts"],
                         ids=["jobs-dropped", "jobs-emptied", "counts-dropped"])
def test_counts_are_right_after_the_index_is_lost_and_rebuilt(qpath, lost):
    """A lost jobs table (the index is rebuilt) or counts table is made again on open, and the
    counts computed anew."""
    with Queue(qpath) as q:
        q.enqueue_many(add, [(i, i) for i in range(10)])
        run_burst(q, max_jobs=4)
        q.enqueue(add, 1, 1)
        expected = q.counts()
    with closing(sqlite3.connect(qpath / "state.sqlite3")) as conn, conn:
        conn.execute(lost)
    with Queue(qpath) as q:
        assert q.counts() == counted(q) == expected
        run_burst(q)
        assert q.counts() == counted(q)
