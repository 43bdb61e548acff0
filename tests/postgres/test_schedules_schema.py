"""Schema version 3 adds jobq_schedules: a database of version 2 is migrated on open and
keeps its jobs; two queues sharing a database keep their schedules apart."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import pg

from jobq import Queue
from jobq.postgres import schema
from jobq.postgres.url import parse
from jobq.schedule import Schedule
from .pgq import database_as_of, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_sched") as dsn:
        yield url_of(dsn)


def test_schema_3_is_the_schedules_table() -> None:
    assert schema.VERSION >= 3  # 4: dependencies (tests/postgres/test_dependencies_schema.py)
    assert "jobq_schedules" in schema.MIGRATIONS[2][0]


def test_a_version_2_database_is_migrated_and_keeps_its_jobs(fresh_url: str) -> None:
    url = fresh_url + "?queue=q"
    database_as_of(url, 2)
    with Queue(url) as q:
        jid = q.enqueue("jobtasks:add", 1, 2)
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        conn.execute("UPDATE jobq_schema SET version = 2")
        conn.execute("DROP TABLE jobq_schedules")
        conn.execute("DROP TABLE jobq_dependencies")  # and what version 4 added
        conn.execute("DROP INDEX jobq_jobs_waiting_parents")
        conn.execute("DROP TABLE jobq_totals")  # and what version 5 added
    with Queue(url) as q:
        assert q.state(jid).status == "queued"
        q.engine.schedules.put(Schedule(name="s", cron="* * * * *", task="m:f"), 60.0)
        assert [s.next_at for s in q.engine.schedules.all()] == [60.0]
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        assert conn.execute("SELECT queue, name FROM jobq_schedules").fetchall() == [("q", "s")]


def test_queues_of_one_database_keep_their_schedules_apart(fresh_url: str) -> None:
    with Queue(fresh_url + "?queue=a") as a, Queue(fresh_url + "?queue=b") as b:
        a.engine.schedules.put(Schedule(name="s", cron="* * * * *", task="m:f"), 60.0)
        b.engine.schedules.put(Schedule(name="s", cron="0 * * * *", task="m:g"), 3600.0)
        assert b.engine.schedules.advance("s", 60.0, 120.0) is False
        assert [s.schedule.task for s in a.engine.schedules.all()] == ["m:f"]
        assert a.engine.schedules.remove("s") and [s.next_at for s in
                                                   b.engine.schedules.all()] == [3600.0]
