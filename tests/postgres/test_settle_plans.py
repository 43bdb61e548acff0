"""A settle's statements run their generic plans (jobq.postgres.settle._BEGIN): a plan made for
the lengths of a settle's arrays, with statistics that underestimated the queue, wrote the jobs
a child's watcher gives back by hashing every row of the queue (a bitmap scan of all of them)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

import pg
from workers.reaping import released

from .pgq import frames, new_queue_url, open_url, succeed

QUEUED = 20_000
BATCH = 50
STATS_TIMEOUT = 10.0  # seconds for an ended session's table statistics to show


@pytest.fixture
def stale_dsn(pg_server: pg.Server) -> Iterator[str]:
    """A database of its own whose jobq_jobs is never analyzed: its statistics do not know how
    many jobs a queue holds (as before autovacuum's first ANALYZE of a growing queue)."""
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_plans") as dsn:
        open_url(new_queue_url(dsn)).close()  # the tables
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE jobq_jobs SET (autovacuum_enabled = false)")
        yield dsn


def _rows_read(conn: psycopg.Connection[object], before: int | None = None) -> int:
    """The rows of jobq_jobs that scans have read in this database, once the count differs
    from ``before`` (an ended session's statistics show shortly after it ends)."""
    deadline = time.monotonic() + STATS_TIMEOUT
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
                           " FROM pg_stat_user_tables WHERE relname = 'jobq_jobs'").fetchone()
        assert row is not None
        if before is None or row[0] != before or time.monotonic() > deadline:
            return int(row[0])
        time.sleep(0.05)


def test_a_hand_back_reads_the_rows_of_its_jobs_only(stale_dsn: str) -> None:
    """A fresh connection (a child's watcher) records most of a batch and gives the rest back,
    in a queue of 20,000 jobs: it reads the rows of its batch, not the queue's."""
    url = new_queue_url(stale_dsn)
    owner = open_url(url)
    try:
        owner.append(frames([f"j{i:05d}" for i in range(QUEUED)]))
        _, claims = owner.settle([], "w/1", 1, prefetch=BATCH - 1)
    finally:
        owner.close()  # its statistics sent as its session ends
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        time.sleep(0.5)
        before = _rows_read(conn)
        watcher = open_url(url)
        try:
            states, _ = watcher.settle(
                [(c.job_id, c.token, succeed()) for c in claims[:40]]
                + [(c.job_id, c.token, released) for c in claims[40:]], "w/1", 0)
        finally:
            watcher.close()
        read = _rows_read(conn, before) - before
    assert all(state is not None for state in states)
    assert 0 < read <= 4 * BATCH


def _heap_blocks(conn: psycopg.Connection[object], before: int | None = None) -> int:
    """Heap blocks of jobq_jobs read in this database, once the count differs from ``before``
    (an ended session's statistics show shortly after it ends)."""
    deadline = time.monotonic() + STATS_TIMEOUT
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0)"
                           " FROM pg_statio_user_tables WHERE relname = 'jobq_jobs'").fetchone()
        assert row is not None
        if before is None or row[0] != before or time.monotonic() > deadline:
            return int(row[0])
        time.sleep(0.05)


OTHER_QUEUED = 120_000  # another queue's jobs: jobq_jobs as big as a busy server's
FINISHED = 2_000  # jobs the queue finished, their row versions dead (never vacuumed here)
LOOKS = 10  # looks, one after the other, the last of which must read no finished job's row


def test_a_reaper_turn_reads_no_finished_jobs_rows(stale_dsn: str) -> None:
    """The reaper's look for other workers' claims (``holders``, ten times a second a worker)
    in a big jobq_jobs that was never analyzed nor vacuumed, after its queue finished 2,000
    jobs: each look reads the heap pages of the queue's live claims (250), not theirs. A
    bitmap scan of the running index (the plan a big unanalyzed table got) never marks the
    finished jobs' index entries dead, so every look read the heap pages of all of them
    again."""
    other = open_url(new_queue_url(stale_dsn))
    try:
        for start in range(0, OTHER_QUEUED, 20_000):
            other.append(frames([f"o{i:06d}" for i in range(start, start + 20_000)]))
    finally:
        other.close()
    url = new_queue_url(stale_dsn)
    owner = open_url(url)
    try:
        owner.append(frames([f"j{i:05d}" for i in range(FINISHED + 1_000)]))
        _, claims = owner.settle([], "w/1", 250)
        for _ in range(FINISHED // 250):  # then 250 claims are left running
            _, claims = owner.settle([(c.job_id, c.token, succeed()) for c in claims], "w/1",
                                     250)
    finally:
        owner.close()
    # A look marks the dead entries it meets once the server sees the finished jobs' row
    # versions as dead to every snapshot (it decides when: soon, but not at once); from then on
    # a look reads the live claims' pages only (31). A bitmap scan never marks them: every look
    # reads them all again (116). One look at a time, each in a session of its own (its
    # statistics show once it ends).
    reads: list[int] = []
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        while len(reads) < LOOKS and not (reads and reads[-1] <= 50):
            before = _heap_blocks(conn)
            reaper = open_url(url)
            try:
                assert reaper.holders("r") == {"w/1": False}
            finally:
                reaper.close()
            reads.append(_heap_blocks(conn, before) - before)
            time.sleep(0.2)
    assert 0 < reads[-1] <= 50, f"heap blocks read by each look: {reads}"
