"""Schema version 4 adds jobq_dependencies: a database of version 3 is migrated on open, keeps
its jobs, and its jobs can then be depended on."""

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
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_deps") as dsn:
        yield url_of(dsn)


def test_schema_4_is_the_dependencies_table() -> None:
    assert schema.VERSION >= 4  # 5: totals (tests/postgres/test_totals_schema.py)
    assert "jobq_dependencies" in schema.MIGRATIONS[3][0]


def test_a_version_3_database_is_migrated_and_its_jobs_can_be_depended_on(fresh_url: str
                                                                         ) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 3)
    with Queue(url) as q:
        old = q.enqueue_call("jobtasks:add", (1, 2), delay=3600)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        conn.execute("UPDATE jobq_schema SET version = 3")  # back to 3, with the job in it
        conn.execute("DROP INDEX jobq_jobs_waiting_parents")
        conn.execute("DROP TABLE jobq_dependencies")
        conn.execute("DROP TABLE jobq_totals")  # and what version 5 added
    with Queue(url) as q:
        child = q.enqueue_call("jobtasks_extra:parents_seen", ("new",), depends_on=[old])
        assert q.state(child).status is Status.WAITING
        assert q.cancel(old)
        assert q.state(child).status is Status.CANCELLED and old in q.state(child).error
        run_burst(q)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        assert conn.execute("SELECT child, parent FROM jobq_dependencies").fetchall() \
            == [(child, old)]
