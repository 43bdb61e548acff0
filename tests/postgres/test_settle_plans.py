"""A settle's statements run their generic plans (jobq.postgres.settle._BEGIN): a plan made for
the lengths of a settle's arrays, with statistics that underestimated the queue, wrote the jobs
a child's watcher gives back by hashing every row of the queue (a bitmap scan of all of them).
And they read the rows of their batch only whatever the statistics say (jobq.postgres.seeks):
after an ANALYZE of the emptied queue, they read the whole queue by ``queue`` alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

import pg
from jobq.engine import Claim
from jobq.state import JobState
from workers.reaping import released

from .pgq import frames, new_queue_url, open_url, succeed

QUEUED = 20_000
EMPTIED = 3_000  # jobs enqueued before the queue was emptied and analyzed, and after
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


def _others_ended(conn: psycopg.Connection[object]) -> None:
    """Wait until no other session is connected to this database: a session sends the rest of
    its table statistics as its backend exits (closing the client's end does not wait for it;
    a loaded machine took more than the half second the tests waited once)."""
    deadline = time.monotonic() + STATS_TIMEOUT
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND pid <> pg_backend_pid()").fetchone() != (0,):
        assert time.monotonic() < deadline, "another session is still connected"
        time.sleep(0.02)
    conn.execute("SELECT pg_stat_clear_snapshot()")


def _count(conn: psycopg.Connection[object], sql: str, name: str) -> int:
    """A statistics view's count (``sql`` of one ``%s``, the table's or index's name), read once
    every other session of this database has ended."""
    _others_ended(conn)
    row = conn.execute(sql, (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _rows_read(conn: psycopg.Connection[object], table: str = "jobq_jobs") -> int:
    """The rows of ``table`` that scans have read in this database, every other session
    ended."""
    return _count(conn, "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
                        " FROM pg_stat_user_tables WHERE relname = %s", table)



def _claim_and_succeed(url: str) -> tuple[list[Claim], list[JobState | None]]:
    """A worker child's turn on a connection of its own: a batch claimed, then all of it
    recorded succeeded; the claims and the states written."""
    worker = open_url(url)
    try:
        _, claims = worker.settle([], "w/1", 1, prefetch=BATCH - 1)
        states, _ = worker.settle([(c.job_id, c.token, succeed()) for c in claims], "w/1", 0)
    finally:
        worker.close()
    return claims, states

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
        before = _rows_read(conn)
        watcher = open_url(url)
        try:
            states, _ = watcher.settle(
                [(c.job_id, c.token, succeed()) for c in claims[:40]]
                + [(c.job_id, c.token, released) for c in claims[40:]], "w/1", 0)
        finally:
            watcher.close()
        read = _rows_read(conn) - before
    assert all(state is not None for state in states)
    assert 0 < read <= 4 * BATCH


def _heap_blocks(conn: psycopg.Connection[object]) -> int:
    """Heap blocks of jobq_jobs read in this database, every other session ended."""
    return _count(conn, "SELECT coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0)"
                        " FROM pg_statio_user_tables WHERE relname = %s", "jobq_jobs")


def _index_scans(conn: psycopg.Connection[object], index: str) -> int:
    """Scans of ``index`` in this database, every other session ended."""
    return _count(conn, "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_indexes"
                        " WHERE indexrelname = %s", index)


def test_a_claim_and_the_settle_of_its_jobs_seek_none_of_them_by_id(stale_dsn: str) -> None:
    """A claim of new jobs looks once (not once a job) whether the queue has any snapshot,
    and the settle of its own claims writes each row where its claim left it, seeking no id
    in jobq_jobs' primary key (one scan of it a job, and one of jobq_snapshots', before)."""
    url = new_queue_url(stale_dsn)
    filler = open_url(url)
    try:
        filler.append(frames([f"j{i:05d}" for i in range(BATCH)]))
    finally:
        filler.close()
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        before = [_index_scans(conn, i) for i in ("jobq_jobs_pkey", "jobq_snapshots_pkey")]
        claims, states = _claim_and_succeed(url)
        after = [_index_scans(conn, i) for i in ("jobq_jobs_pkey", "jobq_snapshots_pkey")]
    assert len(claims) == BATCH and all(state is not None for state in states)
    assert after[0] - before[0] == 0 and after[1] - before[1] <= 2, (before, after)


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
            reads.append(_heap_blocks(conn) - before)
            time.sleep(0.2)
    assert 0 < reads[-1] <= 50, f"heap blocks read by each look: {reads}"


def _emptied_then_refilled(dsn: str, url: str, due: int = 0) -> None:
    """The queue of ``url`` filled, emptied, analyzed (statistics of no rows in the pages the
    table keeps, as autovacuum leaves them when it analyzes a drained queue), filled again; and
    ``due`` jobs delayed, due once this returns (a claim promotes them first)."""
    owner = open_url(url)
    try:
        owner.append(frames([f"a{i:05d}" for i in range(EMPTIED)]))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM jobq_jobs")
            conn.execute("ANALYZE jobq_jobs")
            row = conn.execute("SELECT relpages, reltuples FROM pg_class"
                               " WHERE relname = 'jobq_jobs'").fetchone()
            assert row is not None and row[0] > 0 and row[1] == 0
        owner.append(frames([f"b{i:05d}" for i in range(EMPTIED)]))
        if due:
            owner.append(frames([f"d{i:05d}" for i in range(due)], priority=1, delay=0.2))
            time.sleep(0.3)
    finally:
        owner.close()  # its statistics sent as its session ends


@pytest.mark.parametrize(("batches", "due"), [(1, 0), (2, 0), (1, BATCH)])
def test_settles_after_an_analyze_of_the_emptied_queue_read_their_batches_only(
        stale_dsn: str, batches: int, due: int) -> None:
    """A worker's first settles on a queue analyzed while empty, then refilled: a claim of a
    batch, then the batch recorded and the next claimed, read the rows of their batches, not
    the queue's (which each read whole, by ``queue`` alone, three times for the second); a
    claim that first promotes a batch of due jobs (its first) reads those too, not the queue."""
    url = new_queue_url(stale_dsn)
    _emptied_then_refilled(stale_dsn, url, due)
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        before = _rows_read(conn)
        worker = open_url(url)
        try:
            states, claims = worker.settle([], "w/1", 1, prefetch=BATCH - 1)
            for _ in range(batches - 1):
                states, claims = worker.settle([(c.job_id, c.token, succeed()) for c in claims],
                                               "w/1", 1, prefetch=BATCH - 1)
        finally:
            worker.close()
        read = _rows_read(conn) - before
    assert len(claims) == BATCH and all(state is not None for state in states)
    assert not due or all(c.job_id.startswith("d") for c in claims)  # promoted, then claimed
    assert 0 < read <= 4 * BATCH * batches


def test_a_hand_back_after_an_analyze_of_the_emptied_queue_reads_its_jobs_only(
        stale_dsn: str) -> None:
    """A fresh connection (a child's watcher) locks its rows, records most of a batch and gives
    the rest back, in a queue analyzed while empty, then refilled: it reads its batch's rows."""
    url = new_queue_url(stale_dsn)
    _emptied_then_refilled(stale_dsn, url)
    owner = open_url(url)
    try:
        _, claims = owner.settle([], "w/1", 1, prefetch=BATCH - 1)
    finally:
        owner.close()
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        before = _rows_read(conn)
        watcher = open_url(url)
        try:
            states, _ = watcher.settle(
                [(c.job_id, c.token, succeed()) for c in claims[:40]]
                + [(c.job_id, c.token, released) for c in claims[40:]], "w/1", 0)
        finally:
            watcher.close()
        read = _rows_read(conn) - before
    assert all(state is not None for state in states)
    assert 0 < read <= 4 * BATCH


def test_a_release_of_dependents_after_an_analyze_of_the_emptied_queue_reads_its_jobs_only(
        stale_dsn: str) -> None:
    """A settle whose finished jobs are parents, in a queue analyzed while empty, then refilled:
    the release of their dependents (locked, their parents' statuses read, written) reads those
    jobs' rows, not the queue's."""
    url = new_queue_url(stale_dsn)
    _emptied_then_refilled(stale_dsn, url)
    owner = open_url(url)
    try:
        parents = [f"p{i:05d}" for i in range(BATCH)]
        owner.append(frames(parents, priority=1))
        for parent in parents:
            child = "c" + parent[1:]
            owner.append_dependent(frames([child])[0], child, [parent], "cancel")
    finally:
        owner.close()
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        before = _rows_read(conn)
        claims, states = _claim_and_succeed(url)
        assert sorted(c.job_id for c in claims) == parents
        read = _rows_read(conn) - before
        due = conn.execute("SELECT count(*) FROM jobq_jobs WHERE ready AND job_id LIKE 'c%'"
                           ).fetchone()
    assert all(state is not None for state in states) and due == (BATCH,)
    assert 0 < read <= 6 * BATCH


def test_ttls_after_an_analyze_of_their_emptied_table_are_read_for_their_jobs_only(
        stale_dsn: str) -> None:
    """A settle recording jobs kept for a ttl, once jobq_retention was analyzed empty and filled
    again: it reads those jobs' ttls, not the queue's (a join of them did)."""
    url = new_queue_url(stale_dsn)
    owner = open_url(url)
    try:
        for prefix in ("a", "b"):
            ids = [f"{prefix}{i:05d}" for i in range(EMPTIED)]
            owner.append(frames(ids))
            owner.keep_for(ids, 60.0, 60.0)
            if prefix == "a":
                with psycopg.connect(stale_dsn, autocommit=True) as conn:
                    conn.execute("DELETE FROM jobq_jobs")
                    conn.execute("DELETE FROM jobq_retention")
                    conn.execute("ANALYZE jobq_retention")
    finally:
        owner.close()
    with psycopg.connect(stale_dsn, autocommit=True) as conn:
        before = _rows_read(conn, "jobq_retention")
        claims, states = _claim_and_succeed(url)
        read = _rows_read(conn, "jobq_retention") - before
        kept = conn.execute("SELECT min(expires_at - updated_at) FROM jobq_done").fetchone()
    assert all(state is not None for state in states) and kept == (pytest.approx(60.0),)
    assert 0 < read <= 2 * BATCH
