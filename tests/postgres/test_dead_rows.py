"""A worker's upkeep says when jobq_jobs holds many dead row versions that the server does not
clear (jobq.postgres.dead_rows), each test on a database of its own: the table's statistics are
the test's alone."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import structlog
from structlog.testing import capture_logs

import pg
from conftest import wait_until

from jobq import Queue
from jobq.postgres import dead_rows
from jobq.postgres.url import parse
from .pgq import url_of


@pytest.fixture
def q(pg_server: pg.Server) -> Iterator[Queue]:
    """A queue of 50 jobs, alone in its database, whose jobq_jobs autovacuum leaves alone."""
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_dead_rows") as dsn:
        with Queue(url_of(dsn) + "?queue=q") as queue:
            queue.enqueue_many("jobtasks:add", [(1, 1)] * 50)
            with psycopg.connect(parse(queue.location).conninfo, autocommit=True) as conn:
                conn.execute("ALTER TABLE jobq_jobs SET (autovacuum_enabled = false)")
            yield queue


def _sql(q: Queue, *statements: str) -> None:
    with psycopg.connect(parse(q.location).conninfo, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _warnings(watch: dead_rows.DeadRowsWatch) -> list[dict]:
    """The storage.dead_rows events of one step of ``watch``."""
    with capture_logs() as events:
        watch.step()
    return [e for e in events if e["event"] == "storage.dead_rows"]


def test_autovacuum_off_and_many_updates_are_found_until_a_vacuum(q: Queue) -> None:
    db = q.engine._db  # noqa: SLF001 - the engine's own connection, as its upkeep uses it
    assert dead_rows.look(db, dead_rows=150) is None  # 50 jobs stored, nothing updated yet
    _sql(q, *["UPDATE jobq_jobs SET priority = priority"] * 4)  # 200 updates, then the session
    # ends: its statistics reach the server's then
    found = wait_until(lambda: dead_rows.look(db, dead_rows=150))
    assert isinstance(found, dead_rows.DeadRows)
    assert found.changes >= 200 and found.autovacuum is False and found.vacuumed_ago is None
    assert found.message().startswith("autovacuum is off for jobq_jobs (the server's or the"
                                      " table's setting), and it was never vacuumed, after")
    assert dead_rows.look(db, dead_rows=10_000) is None  # under the threshold: nothing said
    _sql(q, "VACUUM jobq_jobs")  # someone sees to it: nothing said for a day
    wait_until(lambda: dead_rows.look(db, dead_rows=150) is None)


def test_the_watch_logs_a_warning_then_waits_its_interval(q: Queue) -> None:
    _sql(q, *["UPDATE jobq_jobs SET priority = priority"] * 4)
    db = q.engine._db  # noqa: SLF001 - the engine's own connection, as its upkeep uses it
    watch = dead_rows.DeadRowsWatch(db, structlog.get_logger(), every=0, dead_rows=150)
    [event] = wait_until(lambda: _warnings(watch))
    assert event["log_level"] == "warning" and event["table"] == "jobq_jobs"
    assert event["changes"] >= 200 and event["autovacuum"] is False
    assert "run VACUUM jobq_jobs on a schedule" in event["message"]
    hourly = dead_rows.DeadRowsWatch(db, structlog.get_logger(), every=3600, dead_rows=150)
    with capture_logs() as events:
        hourly.step()  # a worker that just started: its first look is a minute away
    assert events == []


def test_the_watch_counts_the_changes_since_the_last_vacuum_it_saw(q: Queue) -> None:
    """The server's count of updates and deletes runs on across a VACUUM: a queue vacuumed by
    hand less often than daily was warned of all the changes before it, every 10 minutes."""
    db = q.engine._db  # noqa: SLF001 - the engine's own connection, as its upkeep uses it
    watch = dead_rows.DeadRowsWatch(db, structlog.get_logger(), every=0, dead_rows=150,
                                    vacuum_age=0)  # (any VACUUM is old enough: a day passed)
    _sql(q, *["UPDATE jobq_jobs SET priority = priority"] * 4)  # 200 changes
    [event] = wait_until(lambda: _warnings(watch))
    assert 200 <= event["changes"] < 400
    _sql(q, "VACUUM jobq_jobs")
    wait_until(lambda: dead_rows.read(db).vacuumed_at is not None)
    assert _warnings(watch) == []  # 0 changes since
    _sql(q, *["UPDATE jobq_jobs SET priority = priority"] * 2)  # 100 more: under 150
    wait_until(lambda: dead_rows.read(db).changes >= 300)
    assert _warnings(watch) == []
    _sql(q, *["UPDATE jobq_jobs SET priority = priority"] * 2)  # 200 since the VACUUM
    [event] = wait_until(lambda: _warnings(watch))
    assert 200 <= event["changes"] < 400 and event["vacuumed_ago"] is not None


def test_a_worker_upkeep_watches_the_dead_rows(q: Queue) -> None:
    upkeep = q.engine.upkeep(compact_threshold=0, logger=structlog.get_logger())
    assert any(isinstance(part, dead_rows.DeadRowsWatch) for part in vars(upkeep).values())


@pytest.mark.parametrize(("found", "warned"), [
    (dead_rows.DeadRows(0, 10, 200_000, False, None), True),  # off, never vacuumed
    (dead_rows.DeadRows(0, 10, 200_000, False, 90_000.0), True),  # off, not for a day
    (dead_rows.DeadRows(0, 10, 200_000, False, 3_600.0), False),  # off, vacuumed by hand
    (dead_rows.DeadRows(0, 10, 50_000, False, None), False),  # off, little done yet
    (dead_rows.DeadRows(250_000, 1_000, 9_000_000, True, 30.0), True),  # on, held back
    (dead_rows.DeadRows(250_000, 300_000, 9_000_000, True, 30.0), False),  # on, a big queue
    (dead_rows.DeadRows(5_000, 10, 9_000_000, True, None), False),  # on, keeping up
], ids=["off-never", "off-a-day", "off-by-hand", "off-little", "on-held", "on-big", "on-ok"])
def test_what_is_worth_a_warning(found: dead_rows.DeadRows, warned: bool) -> None:
    assert dead_rows.judge(found, dead_rows=100_000) is warned


def test_with_autovacuum_on_the_message_names_the_horizon() -> None:
    text = dead_rows.DeadRows(250_000, 1_000, 9_000_000, True, 30.0).message()
    assert text.startswith("jobq_jobs holds 250,000 dead row versions (1,000 live) that"
                           " autovacuum does not clear")
    assert "hot_standby_feedback" in text and "autovacuum is off" not in text
