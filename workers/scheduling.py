"""Firing periodic schedules from a worker's supervisor: no scheduler process of its own.

Once a second at most, :meth:`Scheduler.tick` reads the queue's schedules and fires those due
(:meth:`jobq.schedule.Schedule.firing` decides which times): for each time, it appends the job
of that time's deterministic id, then moves the schedule on with a compare-and-set
(:meth:`jobq.engine.Schedules.advance`). Every worker does this, so schedules keep firing while
any worker lives, and workers that race on one time make one job (an id already stored keeps
its first record) and one advance. A worker that dies between the append and the advance leaves
the schedule where it was: the next worker fires the same time again, which makes no new job.

Schedules declared with ``@jobq.periodic`` in modules the worker imported are stored at its
first tick. A StorageError goes up to the worker's outage handling; any other error of a
schedule (a task that cannot be enqueued) is logged and that time skipped, so one bad schedule
cannot stop the others.

The clock (on a server, a round trip) is read only when there are schedules to look at or
declared ones to store: an idle worker of a queue without schedules does not ask it every second.

``JOBQ_SCHEDULE_CLOCK="anchor,start,speed"`` (tests only) runs the schedules on a fake clock:
at real time ``start`` it reads ``anchor``, and it runs ``speed`` times faster than real time.
The ticks come faster too, one per fake minute (a cron's step) when that is under a second, so
a test sees many fire times in little real time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobq import periodic_jobs
from jobq.errors import ConfigError, JobNotFound, JobqError, StorageError
from jobq.queue import Queue

if TYPE_CHECKING:  # only for annotations: a worker starts without jobq.schedule (issue 19)
    from jobq.schedule import Stored

TICK = 1.0  # seconds between two looks at the schedules, at least
CLOCK_ENV = "JOBQ_SCHEDULE_CLOCK"
FASTEST_TICK = 0.05  # seconds: the shortest tick of a fake clock


def clock_from_env() -> tuple[Callable[[], float], float] | None:
    """The fake clock JOBQ_SCHEDULE_CLOCK describes, if it is set, and its tick (seconds)."""
    text = os.environ.get(CLOCK_ENV, "")
    if not text:
        return None
    try:
        anchor, start, speed = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"{CLOCK_ENV} must be 'anchor,start,speed' (three numbers), not"
                          f" {text!r}") from exc
    if speed <= 0:
        raise ConfigError(f"{CLOCK_ENV}: the speed must be positive, not {speed!r}")
    # A tick per fake minute, but not more than FASTEST_TICK apart: a simulated day in seconds
    # fires several minutes a tick (misfire="all") rather than reading schedules every 5 ms.
    return (lambda: anchor + (time.time() - start) * speed), max(FASTEST_TICK, min(TICK, 60 / speed))


class Scheduler:
    """Fires the due schedules of one queue, from its worker's loop."""

    def __init__(self, queue: Queue, clock: Callable[[], float] | None = None) -> None:
        self._queue = queue
        fake = None if clock is not None else clock_from_env()
        self._clock = clock or (fake[0] if fake else queue.engine.now)
        self._interval = fake[1] if fake else TICK
        self._registered = False
        self._next_tick = 0.0  # monotonic

    def tick(self, logger: Any) -> None:
        """Fire what is due, unless the last look was less than a tick ago."""
        mono = time.monotonic()
        if mono < self._next_tick:
            return
        self._next_tick = mono + self._interval
        schedules = self._queue.engine.schedules
        if not self._registered:
            declared = periodic_jobs.registered()
            now = self._clock() if declared else 0.0
            for schedule in declared:
                schedules.put(schedule, schedule.next_after(now))
                logger.info("schedule.registered", schedule=schedule.name, cron=schedule.when,
                            tz=schedule.tz)
            self._registered = True
        stored_all = schedules.all()
        if not stored_all:
            return  # no clock read: on a server, a round trip a second per idle worker
        now = self._clock()
        for stored in stored_all:
            try:
                self._fire(stored, now, logger)
            except StorageError:
                raise
            except JobqError as exc:
                logger.error("schedule.fire_failed", schedule=stored.schedule.name,
                             error=f"{type(exc).__name__}: {exc}")
                schedules.advance(stored.schedule.name, stored.next_at,
                                  stored.schedule.next_after(now))

    def _fire(self, stored: Stored, now: float, logger: Any) -> None:
        schedule = stored.schedule
        firing = schedule.firing(stored.next_at, now)
        if firing.next_at == stored.next_at:
            return  # not due
        times = firing.times
        if schedule.overlap == "skip" and times:
            if self._unfinished(stored.last_job):
                logger.info("schedule.overlap_skipped", schedule=schedule.name,
                            running=stored.last_job, times=len(times))
                times = []
            else:
                times = times[-1:]  # catch-up jobs at once would overlap each other
        if len(times) < len(firing.times) or not firing.times:
            logger.info("schedule.missed", schedule=schedule.name, due=stored.next_at,
                        fired=len(times))
        ids = [schedule.job_id(t) for t in times]
        for job_id in ids:
            self._queue.enqueue_call(schedule.task, schedule.args, schedule.kwargs,
                                     job_id=job_id, **schedule.ttls())
        if self._queue.engine.schedules.advance(schedule.name, stored.next_at, firing.next_at,
                                                ids[-1] if ids else None):
            for job_id in ids:
                logger.info("schedule.fired", schedule=schedule.name, job_id=job_id)

    def _unfinished(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        try:
            return not self._queue.engine.status(job_id).finished
        except JobNotFound:  # purged
            return False
