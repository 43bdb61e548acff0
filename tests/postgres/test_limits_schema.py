"""Schema version 5 adds jobq_limits and jobq_job_keys: a database of version 4 is migrated on
open, keeps its jobs, and its jobs and new ones then run within limits."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue, Status
from jobq.postgres import schema
from jobq.postgres.url import parse
from jobq.testing import run_burst
from .pgq import database_as_of, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_limits") as dsn:
        yield url_of(dsn)


def test_schema_6_is_the_limits_tables() -> None:
    assert schema.VERSION >= 6
    assert "jobq_limits" in schema.MIGRATIONS[5][0]
    assert "jobq_job_keys" in schema.MIGRATIONS[5][1]


def test_a_version_5_database_is_migrated_and_takes_limits(fresh_url: str) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 5)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('jobq_limits')").fetchone()[0] is None
    with Queue(url) as q:
        old = q.enqueue_call("jobtasks:add", (1, 2))
        q.set_limit("api", concurrency=1)
        keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api")
                 for i in range(2)]
        claimed = [c.job_id for c in q.engine.settle([], "w", 10)[1]]
        assert claimed == [old, keyed[0]]
        assert q.state(keyed[1]).status is Status.QUEUED
        q.set_limit("api", concurrency=None)
        run_burst(q)
        assert q.result(keyed[1], timeout=5) == 2
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
