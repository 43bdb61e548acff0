"""Schedules stored through the engine seam (both engines): put, replace, remove, and the
compare-and-set that lets one worker only move a schedule past a fire time; and a queue
directory of store schema 3 that opens upgraded, with a schedules table."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jobq import Queue, Status
from jobq.local.state_db import STORE_SCHEMA
from jobq.schedule import Schedule
from workers import Worker


def sched(name: str = "s", cron: str = "*/5 * * * *", **options: object) -> Schedule:
    return Schedule(name=name, cron=cron, task="jobtasks:noop", **options)  # type: ignore[arg-type]


def test_put_all_remove(q: Queue) -> None:
    store = q.engine.schedules
    assert store.all() == []
    store.put(sched("b", args=(1, "x")), 300.0)
    store.put(sched("a", tz="Europe/Berlin", misfire="all"), 600.0)
    got = store.all()
    assert [(s.schedule.name, s.next_at, s.last_job) for s in got] == [("a", 600.0, None),
                                                                     ("b", 300.0, None)]
    assert got[1].schedule == sched("b", args=(1, "x"))
    assert store.remove("a") is True and store.remove("a") is False
    assert [s.schedule.name for s in store.all()] == ["b"]


def test_a_replaced_schedule_keeps_its_next_time_unless_its_timing_changed(q: Queue) -> None:
    store = q.engine.schedules
    store.put(sched(), 300.0)
    store.put(sched(misfire="once", args=(2,)), 900.0)  # same cron and zone: time kept
    (s,) = store.all()
    assert (s.next_at, s.schedule.misfire, s.schedule.args) == (300.0, "once", (2,))
    store.put(sched(cron="0 * * * *"), 3600.0)
    assert store.all()[0].next_at == 3600.0
    store.put(sched(cron="0 * * * *", tz="Asia/Tokyo"), 7200.0)
    assert store.all()[0].next_at == 7200.0


def test_an_interval_schedule_is_stored_and_a_changed_interval_restarts_it(q: Queue) -> None:
    store = q.engine.schedules
    five = Schedule(name="s", every=300, task="jobtasks:noop")
    store.put(sched(), 600.0)
    store.put(five, 900.0)  # cron to interval: timing changed
    assert store.all()[0] == (five, 900.0, None)
    store.put(Schedule(name="s", every=300, task="jobtasks:noop", misfire="all"), 1200.0)
    assert store.all()[0].next_at == 900.0  # same interval: time kept
    store.put(Schedule(name="s", every=600, task="jobtasks:noop"), 1200.0)
    assert (store.all()[0].next_at, store.all()[0].schedule.every) == (1200.0, 600)


def test_advance_is_a_compare_and_set(q: Queue) -> None:
    store = q.engine.schedules
    store.put(sched(), 300.0)
    assert store.advance("s", 300.0, 600.0, "periodic:s:1") is True
    assert store.advance("s", 300.0, 600.0, "periodic:s:2") is False  # a second worker
    (s,) = store.all()
    assert (s.next_at, s.last_job) == (600.0, "periodic:s:1")
    assert store.advance("s", 600.0, 900.0) is True  # no job: the last one is kept
    assert store.all()[0].last_job == "periodic:s:1"
    assert store.advance("gone", 0.0, 1.0) is False


def test_schedules_survive_reopening(location: str) -> None:
    with Queue(location) as q:
        q.engine.schedules.put(sched(), 300.0)
    with Queue(location) as q:
        assert [s.next_at for s in q.engine.schedules.all()] == [300.0]


def test_a_store_schema_3_queue_opens_upgraded_with_its_jobs(
        golden_store: Callable[[int], Path]) -> None:
    """The golden queue written by jobq before schedules (see golden/queue_store3.md)."""
    root = golden_store(3)
    with Queue(root) as q:
        assert q.store.conn.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA == 7
        assert q.counts() == {"queued": 2, "running": 0, "failed": 0, "succeeded": 2,
                              "dead": 1, "cancelled": 1}
        assert q.engine.schedules.all() == []
        q.engine.schedules.put(sched(), 300.0)
        Worker(q).run(burst=True)
        assert q.result("queued") == 42 and q.result("succeeded") == 5
    with Queue(root) as q:
        assert [s.schedule.name for s in q.engine.schedules.all()] == ["s"]


@pytest.mark.parametrize("bad", ["{not json", '{"name": "s"}'], ids=["garbage", "no-fields"])
def test_a_schedule_row_that_cannot_be_read_is_skipped_not_a_crash(tmp_path: Path,
                                                                     bad: str) -> None:
    with Queue(tmp_path / "q") as q:
        q.engine.schedules.put(sched(), 300.0)
        with q.store.transaction() as conn:
            conn.execute("UPDATE schedules SET spec = ?", (bad,))
        assert q.engine.schedules.all() == []
        [(name, why)] = q.engine.schedules.unreadable()
        assert name == "s" and "stored schedule" in why


def test_an_unreadable_schedule_row_is_skipped_with_a_warning_and_listed(tmp_path: Path
                                                                        ) -> None:
    """One bad row (hand-edited, or written by a newer jobq) must not stop the others."""
    from structlog.testing import capture_logs
    from test_cli import ok

    from jobq.schedule import Schedule
    root = tmp_path / "q"
    with Queue(root) as q:
        for name in ("bad", "good"):
            q.engine.schedules.put(Schedule(name=name, cron="*/5 * * * *",
                                            task="jobtasks:noop"), 4102444800.0)
        with q.store.transaction() as conn:
            conn.execute("UPDATE schedules SET spec = '{\"name\": 1, \"oops\": 2}'"
                         " WHERE name = 'bad'")
        with capture_logs() as logs:
            assert [s.schedule.name for s in q.engine.schedules.all()] == ["good"]
        assert [(e["event"], e["name"]) for e in logs] == [("schedule.unreadable", "bad")]
        assert [name for name, _ in q.engine.schedules.unreadable()] == ["bad"]
    listed = ok("schedule", "list", "--dir", str(root))
    assert listed.startswith("schedule bad: unreadable (") and "good" in listed


def test_cli_schedules_survive_a_state_database_made_again_from_the_log(tmp_path: Path
                                                                        ) -> None:
    """jobq schedule add, then state.sqlite3 lost: reopening puts the schedule back from
    schedules.json (the jobs come back from the log); a removed one stays removed."""
    from structlog.testing import capture_logs
    from test_cli import ok

    root = tmp_path / "q"
    ok("init", "--dir", str(root))
    ok("schedule", "add", "--dir", str(root), "kept", "*/5 * * * *", "jobtasks:add", "1", "2")
    ok("schedule", "add", "--dir", str(root), "gone", "--every", "1h", "jobtasks:noop")
    ok("schedule", "remove", "--dir", str(root), "gone")
    with Queue(root) as q:
        job = q.enqueue("jobtasks:add", 1, 1)
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (root / name).unlink(missing_ok=True)
    with capture_logs() as logs, Queue(root) as q:
        assert q.state(job).status is Status.QUEUED  # from the log
        [stored] = q.engine.schedules.all()
        assert (stored.schedule.name, stored.schedule.args) == ("kept", (1, 2))
        assert stored.next_at > time.time() - 1
    assert [e["schedules"] for e in logs if e["event"] == "store.schedules_restored"] == [
        ["kept"]]
    assert "kept" in ok("schedule", "list", "--dir", str(root))


def test_no_schedule_comes_back_once_all_were_removed(tmp_path: Path) -> None:
    root = tmp_path / "q"
    with Queue(root) as q:
        q.engine.schedules.put(sched(), 300.0)
        assert q.engine.schedules.remove("s")
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (root / name).unlink(missing_ok=True)
    with Queue(root) as q:
        assert q.engine.schedules.all() == []
