"""The supervisor's scheduler (workers/scheduling.py) on every engine: it reads the clock (on
a server, a round trip) only when the queue has schedules, and then still fires them."""

from __future__ import annotations

import time

import pytest
import structlog
from structlog.testing import capture_logs

from jobq import Queue
from jobq.errors import JobNotFound
from jobq.testing import run_burst
from workers.scheduling import Scheduler

from periodic_kit import ANCHOR, every_minute, minute


class CountingClock:
    def __init__(self, now: float) -> None:
        self.now, self.reads = now, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_a_queue_without_schedules_never_reads_the_clock(q: Queue) -> None:
    clock = CountingClock(ANCHOR)
    Scheduler(q, clock=clock).tick(structlog.get_logger())
    assert clock.reads == 0 and q.engine.schedules.all() == []


def test_a_due_schedule_reads_the_clock_once_and_fires(q: Queue) -> None:
    q.engine.schedules.put(every_minute(), ANCHOR + 30)  # 00:01
    clock = CountingClock(ANCHOR + 31)
    with capture_logs() as events:
        Scheduler(q, clock=clock).tick(structlog.get_logger())
    assert clock.reads == 1
    assert [e["job_id"] for e in events if e["event"] == "schedule.fired"] == [minute("s", 1)]
    assert q.engine.ids_starting_with("periodic:s:", 10) == [minute("s", 1)]
    (stored,) = q.engine.schedules.all()
    assert stored.next_at == ANCHOR + 90 and stored.last_job == minute("s", 1)


def test_a_schedule_s_ttls_reach_the_jobs_it_fires(q: Queue) -> None:
    """Stored with the schedule (state database or table) and given to each firing's enqueue:
    the fired job is purged once its result_ttl has passed."""
    q.engine.schedules.put(every_minute(result_ttl=0, failure_ttl=3600), ANCHOR + 30)
    (stored,) = q.engine.schedules.all()
    assert stored.schedule.ttls() == {"result_ttl": 0.0, "failure_ttl": 3600.0}
    Scheduler(q, clock=CountingClock(ANCHOR + 31)).tick(structlog.get_logger())
    job = minute("s", 1)
    assert run_burst(q) == 1
    time.sleep(0.05)  # the ttl counts from the job's end, on the engine's clock
    assert q.engine.expire(100) == 1
    with pytest.raises(JobNotFound):
        q.state(job)
