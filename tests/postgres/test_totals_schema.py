"""Schema version 5 adds jobq_totals: a database of version 4 is migrated on open, its totals
counted from the jobs it keeps, and counted on from there."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue
from jobq.postgres import schema
from jobq.postgres.url import parse
from jobq.testing import run_burst
from .pgq import database_as_of, rewind, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_totals") as dsn:
        yield url_of(dsn)


def test_schema_8_is_the_totals_table() -> None:
    assert schema.VERSION >= 8
    assert "jobq_totals" in schema.MIGRATIONS[7][0]


def test_a_version_7_database_is_migrated_with_its_totals_counted(fresh_url: str) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 7)
    with Queue(url) as q:  # stores the jobs as version 8 does; the table goes below
        q.enqueue_many("jobtasks:add", [(1, 2), (3, 4)])
        q.enqueue_call("jobtasks:boom", max_attempts=1)
        run_burst(q)
        q.enqueue("jobtasks:add", 5, 6)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        rewind(conn, 7)
    with Queue(url) as q:
        assert q.engine.totals() == {("enqueued", ""): 4, ("succeeded", ""): 2,
                                     ("failed", ""): 1}
        run_burst(q)
        assert q.engine.totals()[("succeeded", "")] == 3
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
