"""Riding out a storage outage: a database server restarting, unreachable, or ending a session.

A worker's supervisor and children each meet an outage on their own connections. Each waits
with capped exponential backoff and jitter (so that a fleet of workers does not reconnect in
step), probing the storage with one cheap call per wait, and logs the outage once when it
begins (``storage.unreachable``) and once when the probe succeeds (``storage.reconnected``,
with how long it lasted). Only transient errors (:func:`jobq.errors.transient`) are ridden out:
a permanent one (no such database, permission denied) still stops the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jobq.engine import Engine, Liveness
from jobq.errors import LivenessLost, StorageError, transient

if TYPE_CHECKING:
    import random

T = TypeVar("T")

FIRST_DELAY = 0.1  # seconds before the first retry
MAX_DELAY = 5.0  # the cap the delays double up to


def backoff(failures: int, rng: random.Random, *, first: float = FIRST_DELAY,
            cap: float = MAX_DELAY) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``first`` doubling up to
    ``cap``, each drawn between half and all of it (jitter)."""
    if failures < 1:
        return 0.0
    ceiling = min(cap, first * 2.0 ** min(failures - 1, 62))
    return rng.uniform(ceiling / 2, ceiling)


class Outage:
    """One process's current outage, if any: its start, its failures, what it logged."""

    def __init__(self, logger: Any, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        # Made at the first failure: seeding a Random reads the OS's entropy (about 20 us), and a
        # worker child makes an Outage for every ctx.save (issue 19).
        self._rng = rng
        self._clock = clock
        self.failures = 0
        self.began: float | None = None

    @property
    def active(self) -> bool:
        return self.began is not None

    def failed(self, exc: BaseException) -> float:
        """Note a transient failure; the seconds to wait before trying again."""
        if self.began is None:
            self.began = self._clock()
            self._log.warning("storage.unreachable", error=str(exc))
        self.failures += 1
        if self._rng is None:
            import random  # here, not by every worker as it starts (issue 19)
            self._rng = random.Random()
        return backoff(self.failures, self._rng)

    def recovered(self) -> None:
        """The storage answered again: log how long the outage lasted, and forget it."""
        if self.began is not None:
            self._log.info("storage.reconnected", seconds=round(self._clock() - self.began, 3),
                           retries=self.failures)
        self.began, self.failures = None, 0

    def ride_out(self, exc: BaseException, probe: Callable[[], object],
                 wait: Callable[[float], bool]) -> bool:
        """Wait and ``probe`` until the probe succeeds (True), or until ``wait`` says to stop
        (False). ``exc`` and any error of the probe that is not transient is raised."""
        while True:
            if not transient(exc):
                raise exc
            if wait(self.failed(exc)):
                return False
            try:
                probe()
            except Exception as err:  # noqa: BLE001 - re-raised above unless transient
                exc = err
                continue
            self.recovered()
            return True


def call_through(outage: Outage, call: Callable[[], T],
                 stop: Callable[[], bool]) -> T | None:
    """``call()``, made again after each transient storage error (with backoff) until it
    succeeds; None if ``stop`` says to stop first. A permanent error is raised."""
    while True:
        try:
            result = call()
        except StorageError as exc:
            if not transient(exc):
                raise
            if sleep_unless(outage.failed(exc), stop):
                return None
            continue
        outage.recovered()
        return result


def sleep_unless(seconds: float, stop: Callable[[], bool], step: float = 0.05) -> bool:
    """Sleep ``seconds``, looking at ``stop`` every ``step``; True (at once) once it says so."""
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(step, left))
    return True


def still_alive(engine: Engine, lock: Liveness, worker: str, logger: Any,
                owners: Callable[[], list[str]]) -> Liveness:
    """A supervisor's probe in an outage: the storage answers, and ``worker``'s liveness lock
    is held; taken again on a new session if its session was lost (the lock returned).

    Others may have taken the worker for dead meanwhile and reclaimed the jobs of its children
    (``owners``): the claim tokens refuse their late results, and the claims nobody reclaimed
    stay theirs. Until the server drops the old session, taking the lock fails transiently.
    """
    engine.now()
    try:
        lock.check()
        return lock
    except LivenessLost:
        lock.close()
    try:
        lock = engine.workers.hold(worker)
    except LivenessLost as exc:  # its old session still holds it
        raise LivenessLost(str(exc), transient=True) from exc
    logger.warning("worker.liveness_retaken",
                   claims_kept=sum(len(engine.held(owner)) for owner in owners()))
    return lock
