"""The PostgreSQL schema of groups (version 5): a version 4 database is migrated in place, its
jobs kept, and takes a q.map with a final step."""

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
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_groups") as dsn:
        yield url_of(dsn)


def test_schema_5_is_the_groups_table() -> None:
    assert schema.VERSION >= 5
    assert "jobq_groups" in schema.MIGRATIONS[4][0]


def test_a_version_4_database_is_migrated_and_takes_a_map(fresh_url: str, tmp_path) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 4)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('jobq_groups')").fetchone()[0] is None
    with Queue(url) as q:
        old = q.enqueue_call("jobtasks:add", (1, 2))
        out = tmp_path / "then.txt"
        g = q.map("grouptasks:square", range(4), chunk_size=3,
                  then=("grouptasks:note_then", (str(out),)))
        assert q.state(q.group(g.id).then_job).status is Status.WAITING
        run_burst(q)
        assert q.result(old) == 3 and q.gather(g.id) == [0, 1, 4, 9]
        assert out.read_text().split() == [g.id]
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
