"""Result retention (issue 17): how long finished jobs are kept before workers purge them.

A job's ``result_ttl`` counts from when it ended succeeded or cancelled, its ``failure_ttl``
from when it ended dead; None keeps it forever. Each job's pair is recorded by the engine
(:meth:`jobq.engine.Engine.keep_for`) before its record is stored, and only for jobs that have
one: a queue that keeps everything (the default) pays nothing at enqueue. The engine sets the
job's expiry time in the transaction that ends it (and clears it if the job is retried), and
workers delete the jobs past their expiry a batch at a time in their upkeep (:class:`Expiry`),
seeking an index on that time.

A purged job is gone: ``q.state`` raises JobNotFound, its id may be used again by a new
``enqueue_call(job_id=...)``, and a child's ``parent_results`` reads None for it. A parent is
kept past its expiry while a job that depends on it has not ended (an engine pushes its expiry
back by :data:`PARENT_GRACE`), so a child released late still reads its parents' results.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple, Protocol

from .errors import InvalidJob, JobqError

# The defaults: keep everything, as jobq always has (q.result() a week later still answers,
# and an enqueue records nothing more). Queue(result_ttl=..., failure_ttl=...) sets a queue's.
DEFAULT_RESULT_TTL: float | None = None
DEFAULT_FAILURE_TTL: float | None = None

EXPIRE_BATCH = 500  # jobs one upkeep step deletes at most (one short transaction)
EXPIRE_EVERY = 1.0  # seconds between two looks for expired jobs while there are none
PARENT_GRACE = 60.0  # seconds a parent's expiry is pushed back while a child has not ended


class Retention(NamedTuple):
    """A job's ttls as stored: seconds, or None (forever)."""

    result_ttl: float | None
    failure_ttl: float | None

    @property
    def forever(self) -> bool:
        return self.result_ttl is None and self.failure_ttl is None


KEEP_FOREVER = Retention(None, None)


def check_ttl(name: str, value: object) -> float | None:
    """``value`` as stored (float seconds or None), or InvalidJob naming ``name``."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0:
        raise InvalidJob(f"{name} must be a number of seconds >= 0, or None to keep the job"
                         f" forever, not {value!r}")
    return float(value)


def given(result_ttl: float | None, failure_ttl: float | None) -> dict[str, float]:
    """The ttls of a job, as ``enqueue_call`` keywords, from a source where None means "not
    given" (a command line, a schedule): one not given is left out, so the queue's default
    applies (``enqueue_call`` takes None as "keep forever")."""
    return {name: value for name, value in (("result_ttl", result_ttl),
                                            ("failure_ttl", failure_ttl)) if value is not None}


def resolve(result_ttl: object, failure_ttl: object, default: Retention) -> Retention:
    """The ttls of one enqueue: those given (``...``: not given, the queue's default)."""
    return Retention(
        default.result_ttl if result_ttl is ... else check_ttl("result_ttl", result_ttl),
        default.failure_ttl if failure_ttl is ... else check_ttl("failure_ttl", failure_ttl))


class Expiring(Protocol):
    """What :class:`Expiry` needs of an engine."""

    def expire(self, limit: int) -> int: ...


class Expiry:
    """The retention part of a worker's upkeep: a batch of expired jobs deleted per step, and
    a look at most every EXPIRE_EVERY seconds while there were none."""

    def __init__(self, engine: Expiring, logger: Any) -> None:
        self.engine, self.log = engine, logger
        self._next = 0.0  # time.monotonic() of the next look

    def step(self) -> int:
        """Delete up to EXPIRE_BATCH expired jobs; how many (errors logged, never raised)."""
        now = time.monotonic()
        if now < self._next:
            return 0
        try:
            gone = self.engine.expire(EXPIRE_BATCH)
        except (JobqError, OSError) as exc:
            self.log.warning("worker.expiry_failed", error=str(exc))
            gone = 0
        if gone:
            self.log.info("jobs.expired", purged=gone)
        if gone < EXPIRE_BATCH:  # caught up: look again later; else go on at the next step
            self._next = now + EXPIRE_EVERY
        return gone
