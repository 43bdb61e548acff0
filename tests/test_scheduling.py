"""The supervisor's scheduler (workers/scheduling.py) on every engine: it reads the clock (on
a server, a round trip) only when the queue has schedules, and then still fires them."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from jobq import Queue
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
