"""Schema version 9 puts each unfinished job's concurrency key on its jobq_jobs row (indexed for
the claim of a limited key): a version-8 database with keyed jobs queued is backfilled on open
and its jobs still run within their limits; a retried job (moved back from jobq_done) keeps
its key."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue, Status
from jobq.postgres import schema
from jobq.postgres.url import parse
from .pgq import rewind, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_keycol") as dsn:
        yield url_of(dsn) + "?queue=q"


def _keys(url: str) -> dict[str, str | None]:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        return dict(conn.execute("SELECT job_id, concurrency_key FROM jobq_jobs").fetchall())


def test_schema_9_is_the_key_column() -> None:
    assert schema.VERSION >= 9
    assert "ADD COLUMN concurrency_key" in schema.MIGRATIONS[8][0]
    assert "jobq_jobs_keyed_ready" in schema.MIGRATIONS[8][2]


def test_a_version_8_database_is_backfilled_and_keeps_its_limits(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        plain = q.enqueue_call("jobtasks:add", (1, 2))
        keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api")
                 for i in range(2)]
        q.set_limit("api", concurrency=1)
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        rewind(conn, 8)
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE"
                            " table_name = 'jobq_jobs' AND column_name = 'concurrency_key'"
                            ).fetchone()[0] == 0
    with Queue(fresh_url) as q:
        assert _keys(fresh_url) == {plain: None, keyed[0]: "api", keyed[1]: "api"}
        claimed = [c.job_id for c in q.engine.settle([], "w", 10)[1]]
        assert claimed == [plain, keyed[0]]
        assert q.state(keyed[1]).status is Status.QUEUED
        assert not q.engine.settle([], "w2", 10)[1]


def test_a_retried_job_keeps_its_key_and_its_limit(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        q.set_limit("api", concurrency=1)
        first = q.enqueue_call("jobtasks:add", (1, 1), concurrency_key="api")
        assert q.cancel(first)
        assert first not in _keys(fresh_url)  # finished: in jobq_done
        holder = q.enqueue_call("jobtasks:add", (2, 2), concurrency_key="api")
        assert [c.job_id for c in q.engine.settle([], "w", 10)[1]] == [holder]
        assert q.retry(first)
        assert _keys(fresh_url)[first] == "api"
        assert q.state(first).status is Status.QUEUED
        assert not q.engine.settle([], "w2", 10)[1]  # the key's only slot is held
