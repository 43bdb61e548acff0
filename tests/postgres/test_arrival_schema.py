"""Schema version 12: the arrival index (jobq_jobs_arrival) holds no entry for a plain ready job
of priority 0, which the ready index keeps in arrival order; listings merge the two and still
read a page's rows only, and a version-11 database is upgraded on open. Version 13: the ready
index is not deduplicated."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue, Status
from jobq.postgres import schema
from jobq.postgres.url import parse
from .pgq import new_queue_url, open_url, rewind, url_of

STATS_TIMEOUT = 10.0  # seconds for an ended session's table statistics to show


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_arrival") as dsn:
        yield url_of(dsn) + "?queue=q"


def _indexes(url: str) -> dict[str, str]:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        return dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes"
                                 " WHERE tablename = 'jobq_jobs'").fetchall())


def _entries(url: str) -> dict[str, int]:
    """Index tuples of jobq_jobs's indexes, as a VACUUM counts them."""
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        conn.execute("VACUUM jobq_jobs")
        return {name: int(n) for name, n in conn.execute(
            "SELECT c.relname, c.reltuples FROM pg_index x JOIN pg_class c"
            " ON c.oid = x.indexrelid WHERE x.indrelid = 'jobq_jobs'::regclass")}


def _mixed(q: Queue) -> list[str]:
    """Jobs of every kind the two ranges hold, in the order they were enqueued."""
    ids = q.enqueue_many("jobtasks:add", [(i, i) for i in range(5)])
    ids.append(q.enqueue_call("jobtasks:add", (1, 1), priority=3))
    ids.append(q.enqueue_call("jobtasks:add", (1, 1), delay=600))
    ids += q.enqueue_many("jobtasks:add", [(i, i) for i in range(3)])
    ids.append(q.enqueue_call("jobtasks:add", (2, 2), priority=-2))
    q.set_limit("api", concurrency=1)
    ids.append(q.enqueue_call("jobtasks:add", (1, 1), concurrency_key="api"))  # held
    ids += q.enqueue_many("jobtasks:add", [(i, i) for i in range(2)])
    return ids


def test_schema_12_is_the_arrival_index() -> None:
    assert schema.VERSION >= 12
    assert schema.MIGRATIONS[11][0] == "DROP INDEX jobq_jobs_seq"
    assert "jobq_jobs_arrival" in schema.MIGRATIONS[11][1]


def _options(url: str, index: str) -> list[str]:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        found = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s",
                             (index,)).fetchone()
    return list(found[0] or []) if found else []


def test_the_ready_index_is_not_deduplicated(fresh_url: str) -> None:
    """Schema version 13: the ready index's keys next to never repeat, so its pages are split
    without a deduplication pass first; a version-12 database is upgraded."""
    assert schema.VERSION >= 13
    assert "deduplicate_items = off" in schema.MIGRATIONS[12][0]
    with Queue(fresh_url):
        pass
    assert _options(fresh_url, "jobq_jobs_plain_ready") == ["deduplicate_items=off"]
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        rewind(conn, 12)
    assert _options(fresh_url, "jobq_jobs_plain_ready") == []
    with Queue(fresh_url):
        pass
    assert _options(fresh_url, "jobq_jobs_plain_ready") == ["deduplicate_items=off"]


def test_a_plain_ready_job_of_priority_0_has_no_arrival_entry(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(20)])
        q.enqueue_many("jobtasks:add", [(i, i) for i in range(2)], priority=3)
        q.enqueue_call("jobtasks:add", (1, 1), delay=600)
        (claim,) = q.engine.settle([], "w", 1)[1]  # a job of priority 3: running, not ready
        assert q.state(claim.job_id).status is Status.RUNNING
        entries = _entries(fresh_url)
    assert entries["jobq_jobs_pkey"] == 23
    assert entries["jobq_jobs_plain_ready"] == 21
    assert entries["jobq_jobs_arrival"] == 3  # the running, the other of priority 3, the delayed


def test_listings_merge_the_two_ranges_in_arrival_order(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        ids = _mixed(q)
        (claim,) = q.engine.settle([], "w", 1)[1]  # priority 3 first: running now
        assert claim.job_id == ids[5]
        assert [s.job_id for s in q.jobs()] == ids
        assert list(q.engine.job_ids(Status.QUEUED)) == [i for i in ids if i != ids[5]]
        assert list(q.engine.job_ids(Status.RUNNING)) == [ids[5]]
        for newest in (False, True):
            want = ids[::-1] if newest else ids
            assert [r["job_id"] for r in q.engine.rows(None, 100, newest)] == want
            paged, after = [], None
            while True:
                page = [r["job_id"] for r in q.engine.rows(None, 3, newest, after=after)]
                paged += page
                if len(page) < 3:
                    break
                after = page[-1]
            assert paged == want


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


def test_a_page_reads_its_rows_only(pg_server: pg.Server) -> None:
    """A page of 10 of a queue of 3,000 ready jobs, of priority 0 and others, oldest or newest
    first: no sort of the queue's jobs."""
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_arrival") as dsn:
        url = new_queue_url(dsn)
        with Queue(url) as q:
            for priority in (0, 2, 0):
                q.enqueue_many("jobtasks:add", [(i, i) for i in range(1_000)],
                               priority=priority)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE jobq_jobs")
            for newest in (False, True):
                time.sleep(0.5)
                before = _rows_read(conn)
                reader = open_url(url)
                try:
                    assert len(reader.rows(None, 10, newest)) == 10
                finally:
                    reader.close()
                assert _rows_read(conn, before) - before <= 40


def test_a_version_11_database_is_upgraded(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        ids = _mixed(q)
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        rewind(conn, 11)
    indexes = _indexes(fresh_url)
    assert "jobq_jobs_seq" in indexes and "jobq_jobs_arrival" not in indexes
    with Queue(fresh_url) as q:
        indexes = _indexes(fresh_url)
        assert "jobq_jobs_seq" not in indexes
        assert indexes["jobq_jobs_arrival"].endswith(
            "WHERE ((NOT ready) OR held OR (priority <> 0))")
        assert [s.job_id for s in q.jobs()] == ids
        assert [c.job_id for c in q.engine.settle([], "w", 2)[1]] == [ids[5], ids[0]]
