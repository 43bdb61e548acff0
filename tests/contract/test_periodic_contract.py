"""Periodic jobs on every engine, fired by real worker processes on a fast fake clock
(JOBQ_SCHEDULE_CLOCK): on time, once per time whatever the number of workers, after downtime
as the misfire policy says, never over a running firing with overlap="skip", and no more once
removed."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from conftest import wait_until
from test_cli import ok

import jobq
import jobtasks
from jobq import Queue, Status
from jobq.errors import InvalidArgument, InvalidSchedule
from jobq.schedule import Schedule

from periodic_kit import ANCHOR, FAST, every_minute, fake_clock, fired, minute, runs, runs_file, stop


def test_a_schedule_fires_each_time_on_time(q, location, workers, monkeypatch, tmp_path):
    path = runs_file(monkeypatch, tmp_path)
    q.engine.schedules.put(every_minute(), ANCHOR + 30)  # 00:01
    fake_clock(monkeypatch, speed=FAST)  # a fake minute per tick
    w = workers(location)
    wait_until(lambda: len(runs(path)) >= 3)
    stop(w)
    assert runs(path)[:3] == [minute("s", 1), minute("s", 2), minute("s", 3)]
    # The last firing may be queued, unstarted, when the worker stops: every one that ran
    # succeeded, the others wait.
    ran = set(runs(path))
    assert {j: q.state(j).status.value for j in fired(q, "s")} == {
        j: "succeeded" if j in ran else "queued" for j in fired(q, "s")}
    (stored,) = q.engine.schedules.all()
    assert stored.last_job == fired(q, "s")[-1] and stored.next_at > ANCHOR + 3 * 60


def test_an_interval_schedule_fires_at_multiples_of_its_interval(q, location, workers,
                                                                 monkeypatch, tmp_path):
    """Every 2 minutes, at 00:02, 00:04, 00:06 UTC: multiples of the interval since the epoch,
    not 2 minutes after the worker started (at 00:00:30)."""
    path = runs_file(monkeypatch, tmp_path)
    s = Schedule(name="i", every=timedelta(minutes=2), task="periodic_tasks:noted",
                 misfire="all", overlap="allow")
    q.engine.schedules.put(s, s.next_after(ANCHOR))
    fake_clock(monkeypatch, speed=FAST)  # a fake minute per tick
    w = workers(location)
    wait_until(lambda: len(runs(path)) >= 3)
    stop(w)
    assert runs(path)[:3] == [minute("i", 2), minute("i", 4), minute("i", 6)]
    assert all(q.state(j).status is Status.SUCCEEDED for j in fired(q, "i"))
    (stored,) = q.engine.schedules.all()
    assert stored.schedule == s and stored.next_at % 120 == 0
    assert stored.last_job == fired(q, "i")[-1]


def test_a_decorated_schedule_is_stored_by_the_worker_that_imports_it(
        q, location, workers, monkeypatch, tmp_path):
    path = runs_file(monkeypatch, tmp_path)
    fake_clock(monkeypatch, speed=FAST)
    w = workers(location, "--import", "periodic_tasks")
    wait_until(lambda: len(runs(path)) >= 2)
    stop(w)
    assert [s.schedule.task for s in q.engine.schedules.all()] == ["periodic_tasks:minutely"]
    first = fired(q, "minutely")[0]  # the first time after the worker stored it
    m = next(m for m in range(1, 24 * 60) if minute("minutely", m) == first)
    assert runs(path)[:2] == [minute("minutely", m), minute("minutely", m + 1)]


def test_two_workers_fire_each_time_once(q, location, workers, monkeypatch, tmp_path):
    path = runs_file(monkeypatch, tmp_path)
    fake_clock(monkeypatch, speed=FAST)  # a fake minute per tick of each worker
    both = [workers(location, "--import", "periodic_tasks") for _ in range(2)]
    wait_until(lambda: len(runs(path)) >= 4)
    stop(*both)
    ids = fired(q, "minutely")
    first = next(m for m in range(1, 24 * 60) if minute("minutely", m) == ids[0])
    assert ids == [minute("minutely", m) for m in range(first, first + len(ids))]
    ran = runs(path)
    assert len(ran) == len(set(ran)) and set(ran) <= set(ids)  # each time one job, run once
    # A firing made just before the workers stopped may be queued, unstarted (as above).
    assert {j: q.state(j).status.value for j in ids} == {
        j: "succeeded" if j in ran else "queued" for j in ids}


def test_misfire_policies_after_downtime(q, location, monkeypatch, tmp_path):
    """The schedules' last fire times were 50 minutes ago; a worker comes back at 00:02:20."""
    runs_file(monkeypatch, tmp_path)
    missed_from = ANCHOR - 30 - 50 * 60  # 23:10, so 23:10 ... 00:00 were missed
    five = dict(cron="*/5 * * * *", task="periodic_tasks:noted", overlap="allow")
    for policy in ("skip", "once", "all"):
        q.engine.schedules.put(Schedule(name=policy, misfire=policy, **five), missed_from)
    q.engine.schedules.put(every_minute("recent", misfire="skip"), ANCHOR - 30)
    clock = fake_clock(monkeypatch, speed=1, anchor=ANCHOR + 110)  # 00:02:20
    ok("worker", "--dir", location, "--burst", env={"JOBQ_SCHEDULE_CLOCK": clock})
    assert fired(q, "skip") == []  # 00:00 is 140 s late: over the grace
    assert fired(q, "once") == [minute("once", 0)]
    assert fired(q, "all") == [minute("all", m) for m in range(-50, 1, 5)]  # 11 times
    assert fired(q, "recent") == [minute("recent", 2)]  # 20 s late
    nexts = {s.schedule.name: s.next_at for s in q.engine.schedules.all()}
    assert nexts == {"skip": ANCHOR + 270, "once": ANCHOR + 270, "all": ANCHOR + 270,
                     "recent": ANCHOR + 150}


def test_overlap_skip_never_fires_over_a_running_firing(q, location, workers, monkeypatch,
                                                        tmp_path):
    runs_file(monkeypatch, tmp_path)
    q.engine.schedules.put(Schedule(name="slow", cron="* * * * *", task="periodic_tasks:noted",
                                    args=(0.6,), misfire="all", overlap="skip"), ANCHOR + 30)
    fake_clock(monkeypatch, speed=FAST)
    w = workers(location, "--concurrency", "2")
    wait_until(lambda: sum(q.state(j).status is Status.SUCCEEDED
                           for j in fired(q, "slow")) >= 2, timeout=60)
    stop(w)
    # The last one fired may not have started when the worker stopped: the runs are compared.
    states = sorted((s for s in map(q.state, fired(q, "slow")) if s.started_at is not None),
                    key=lambda s: s.started_at)
    assert len(states) >= 2
    for before, after in zip(states, states[1:]):
        assert after.started_at >= before.finished_at, (before.job_id, after.job_id)
    # A run takes 0.6 s, over two ticks (2.4 fake minutes): fewer jobs than minutes went by.
    minutes = (max(s.finished_at for s in states) - states[0].started_at) * FAST / 60
    assert len(states) < minutes


def test_removing_a_schedule_stops_it(q, location, workers, monkeypatch, tmp_path):
    path = runs_file(monkeypatch, tmp_path)
    q.engine.schedules.put(every_minute(), ANCHOR + 30)
    fake_clock(monkeypatch, speed=FAST)
    w = workers(location)
    wait_until(lambda: len(runs(path)) >= 2)
    assert q.engine.schedules.remove("s") is True
    time.sleep(0.5)  # a tick that read the schedule just before may still fire it once
    after = fired(q, "s")
    time.sleep(1.0)  # four more ticks at least
    assert fired(q, "s") == after
    stop(w)
    assert q.engine.schedules.all() == [] and q.engine.schedules.remove("s") is False


def test_bad_schedules_are_refused_and_nothing_is_stored(q: Queue) -> None:
    for bad in (dict(cron="* * *"), dict(tz="Europe/Atlantis"), dict(misfire="sometimes"),
                dict(overlap="wait"), dict(name="no spaces"), dict(task="not-a-reference"),
                dict(args=({1, 2},))):
        fields = {"name": "s", "cron": "* * * * *", "task": "periodic_tasks:noted", **bad}
        with pytest.raises(InvalidSchedule) as err:
            Schedule(**fields)  # type: ignore[arg-type]
        assert isinstance(err.value, InvalidArgument) and "\n" not in str(err.value)
    with pytest.raises(InvalidSchedule, match="bad cron expression"):
        jobq.periodic("every day")(jobtasks.add)  # raises before recording anything
    with pytest.raises(InvalidSchedule, match="exactly one of cron"):
        jobq.periodic("* * * * *", every=timedelta(minutes=5))(jobtasks.add)
    with pytest.raises(InvalidSchedule, match="exactly one of cron"):
        jobq.periodic()(jobtasks.add)
    with pytest.raises(InvalidSchedule, match="whole number of seconds"):
        jobq.periodic(every=timedelta(seconds=0.5))(jobtasks.add)
    with pytest.raises(InvalidSchedule, match="'module:function'"):
        jobq.periodic("* * * * *", name="x")(lambda: None)  # not found by reference
    assert q.engine.schedules.all() == [] and jobq.periodic_jobs.registered() == []
