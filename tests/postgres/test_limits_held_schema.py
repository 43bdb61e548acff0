"""Schema version 10 holds the jobs of limited keys out of the ready index (``jobq_jobs.held``):
a version-9 database with such jobs queued is upgraded on open and its jobs still run within
their limits; setting, removing a limit and retrying a job keep ``held`` equal to "its key has a
limit"; and the plain claim of a queue with limits finds its plain jobs behind thousands of held
ones without reading them."""

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
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_held") as dsn:
        yield url_of(dsn) + "?queue=q"


def _held(url: str) -> dict[str, bool]:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        return dict(conn.execute("SELECT job_id, held FROM jobq_jobs").fetchall())


def _indexes(url: str) -> set[str]:
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        return {name for name, in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'jobq_jobs'")}


def test_schema_10_is_the_held_column() -> None:
    assert schema.VERSION >= 10
    assert "ADD COLUMN held" in schema.MIGRATIONS[9][0]
    assert "WHERE ready AND NOT held" in schema.MIGRATIONS[9][3]


def test_a_version_9_database_is_upgraded_and_keeps_its_limits(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        keyed = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api")
                 for i in range(2)]
        free = q.enqueue_call("jobtasks:add", (5, 5), concurrency_key="other")
        plain = q.enqueue_call("jobtasks:add", (1, 2))
        q.set_limit("api", concurrency=1)
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        rewind(conn, 9)
        columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE"
                               " table_name = 'jobq_jobs' AND column_name = 'held'").fetchone()
        assert columns[0] == 0
    assert "jobq_jobs_ready" in _indexes(fresh_url)
    with Queue(fresh_url) as q:
        assert _held(fresh_url) == {keyed[0]: True, keyed[1]: True, free: False, plain: False}
        assert "jobq_jobs_ready" not in _indexes(fresh_url)
        assert "jobq_jobs_plain_ready" in _indexes(fresh_url)
        claimed = [c.job_id for c in q.engine.settle([], "w", 10)[1]]
        assert claimed == [keyed[0], free, plain]
        assert q.state(keyed[1]).status is Status.QUEUED
        assert not q.engine.settle([], "w2", 10)[1]


def test_held_follows_the_limit_of_its_key(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        first = q.enqueue_call("jobtasks:add", (1, 1), concurrency_key="api")
        q.set_limit("api", concurrency=1)
        second = q.enqueue_call("jobtasks:add", (2, 2), concurrency_key="api")
        assert _held(fresh_url) == {first: True, second: True}
        assert q.engine.has_ready()
        q.set_limit("api")  # both None: the limit removed
        assert _held(fresh_url) == {first: False, second: False}
        # No limit left: the plain claim takes both, in order.
        assert [c.job_id for c in q.engine.settle([], "w", 10)[1]] == [first, second]


def test_a_retried_job_of_a_limited_key_is_held(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        q.set_limit("api", concurrency=1)
        first = q.enqueue_call("jobtasks:add", (1, 1), concurrency_key="api")
        assert q.cancel(first)
        assert q.retry(first)
        assert _held(fresh_url) == {first: True}
        assert [c.job_id for c in q.engine.settle([], "w", 10)[1]] == [first]


def test_plain_jobs_behind_many_held_ones_are_claimed(fresh_url: str) -> None:
    with Queue(fresh_url) as q:
        q.set_limit("api", concurrency=1)
        held = [q.enqueue_call("jobtasks:add", (i, i), concurrency_key="api", priority=1)
                for i in range(50)]
        plain = q.enqueue_call("jobtasks:add", (0, 0))
        claimed = [c.job_id for c in q.engine.settle([], "w", 3)[1]]
        assert claimed == [held[0], plain]  # the key's one slot, then the plain job
        assert not q.engine.settle([], "w2", 3)[1]
