"""Schema version 5 adds retention (jobq_retention, jobq_done.expires_at and its partial
index): a database of version 4 is migrated on open, keeps its finished jobs for ever (they
have no ttl), and new jobs' ttls work; the purge of expired jobs seeks the index."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.postgres import schema
from jobq.postgres.url import parse
from jobq.testing import run_burst
from .pgq import database_as_of, rewind, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_ret") as dsn:
        yield url_of(dsn)


def test_schema_7_is_retention() -> None:
    assert schema.VERSION >= 7
    assert "jobq_retention" in schema.MIGRATIONS[6][0]


def test_a_version_6_database_is_migrated_and_keeps_its_finished_jobs(fresh_url: str) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 6)
    with Queue(url) as q:
        old = q.enqueue("jobtasks:add", 1, 2)
        run_burst(q)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        rewind(conn, 6)  # back to 6, with the job in it
    with Queue(url) as q:
        new = q.enqueue_call("jobtasks:add", (2, 2), result_ttl=0.2)
        run_burst(q)
        time.sleep(0.4)
        assert q.engine.expire(100) == 1
        with pytest.raises(JobNotFound):
            q.state(new)
        assert q.state(old).status is Status.SUCCEEDED and q.result(old) == 3
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        assert conn.execute("SELECT count(*) FROM jobq_retention").fetchone()[0] == 0
        conn.execute("SET enable_seqscan = off")  # (a tiny table: the planner would scan it)
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT job_id FROM jobq_done WHERE queue = 'q' AND expires_at IS NOT NULL"
            " AND expires_at <= 1e12 ORDER BY expires_at LIMIT 500"))
        assert "jobq_done_expires" in plan, plan
