"""Three workers fire one every-five-minutes schedule over a simulated day (a fake clock that runs a
day in the run's seconds) while the chaos loop SIGKILLs one of them (supervisor and children at
once) and starts another in its place, again and again, so kills land between a firing's append
and its advance, and during the jobs. Afterwards: every slot of the day has exactly one job
(none lost, none fired twice), every job succeeded, and a job ran twice only when a kill
interrupted its run."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from conftest import SOAK_ONLY, wait_until
from periodic_kit import ANCHOR, every_minute, fake_clock, fired, runs, runs_file, stop
from test_cli import ok

from jobq import Queue, Status
from jobq.schedule import job_id

DAY = 86_400.0
WORKERS = 3
# One job a claim: a job that ran to its end in a prefetched batch and was killed with its worker
# before the batch settled goes back uncharged (workers.child marks a prefetched job started only
# once it has run ~20 ms), so its second run would leave no crash to check it against.
OPTIONS = ("--concurrency", "2", "--prefetch", "1")
STEP = 300  # every five minutes: 288 slots a day, and a catch-up of MAX_CATCH_UP slots covers
# 3.5 fake days, so a slow stop at the end (tens of real seconds) still fires every slot


def torture(location, workers, monkeypatch, tmp_path, seed,  # type: ignore[no-untyped-def]
            seconds):
    rng = random.Random(seed)
    path = runs_file(monkeypatch, tmp_path)
    with Queue(location) as q:
        q.engine.schedules.put(every_minute("t", cron="*/5 * * * *"), ANCHOR + STEP - 30)
    clock = fake_clock(monkeypatch, speed=DAY / seconds)  # the run's seconds are one day
    alive = [workers(location, *OPTIONS) for _ in range(WORKERS)]
    kills = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.2, 1.2))
        victim = alive.pop(rng.randrange(len(alive)))
        victim.kill_all()
        kills += 1
        alive.append(workers(location, *OPTIONS))
    for w in alive:  # a worker stopped before its signal handlers are set exits on SIGTERM
        wait_until(lambda: w.events("worker.started"))  # noqa: B023
    stop(*alive)
    # One more worker fires what came due since and reclaims what the killed ones held.
    ok("worker", "--dir", location, "--burst", env={"JOBQ_SCHEDULE_CLOCK": clock})
    with Queue(location) as q:
        ids = fired(q, "t")
        (stored,) = q.engine.schedules.all()
        times = [ANCHOR + STEP - 30 + STEP * i for i in range(len(ids))]
        assert ids == [job_id("t", t) for t in times]  # every slot once, from the first
        assert times[-1] - times[0] >= DAY - 2 * STEP  # over a day, at least
        assert stored.next_at == times[-1] + STEP and stored.last_job == ids[-1]
        states = {j: q.state(j) for j in ids}
        assert all(s.status is Status.SUCCEEDED for s in states.values())
        ran = Counter(runs(path))
        assert set(ran) == set(ids)
        twice = [j for j, n in ran.items() if n > 1]
        assert all(states[j].crashes >= 1 for j in twice), twice
    print(f"\nperiodic torture seed={seed}: {len(ids)} times fired over {seconds:.0f} s,"
          f" {kills} SIGKILLs, {len(twice)} jobs run again after a kill")


def test_periodic_torture(location, workers, monkeypatch, tmp_path, seed):
    """CI size: a simulated day in about 5 s of kills per engine (about 300 times fired)."""
    torture(location, workers, monkeypatch, tmp_path, seed, seconds=5)


@pytest.mark.soak
@pytest.mark.timeout(3600)
@SOAK_ONLY
def test_periodic_torture_soak(location, workers, monkeypatch, tmp_path, seed):
    """A simulated day in ten minutes of kills per engine (JOBQ_SOAK=1)."""
    torture(location, workers, monkeypatch, tmp_path, seed, seconds=600)
