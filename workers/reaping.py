"""What becomes of a job whose attempt ended outside its child: the records of those endings,
and the reaping of the jobs of workers that died or stopped renewing their leases.

The supervisor collects :class:`Ended` records (a dead child's attempt, a kill, a reaped claim)
and records them together in one transaction. A claim never started is :func:`released`
uncharged; a started one is charged as a crash (:func:`crash`) unless it saved a new checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from jobq import transitions
from jobq.engine import Change, Engine, worker_of


class Ended(NamedTuple):
    """An attempt that ended, waiting to be recorded with the next transaction."""

    job_id: str
    token: int
    change: Change
    extra: dict[str, Any]


def released(state: Any, now: float, _max_attempts: int) -> Any:
    """Give the attempt back uncharged (a claim never started, or a stop)."""
    return transitions.released(state, now)


def crash(cause: str, token: int, max_crashes: int) -> Change:
    """Record the death of attempt ``token``: charged unless it saved a new checkpoint."""
    return lambda s, now, max_attempts: transitions.interrupted(
        s, cause, now, max_attempts=max_attempts, max_crashes=max_crashes, token=token)


def reap_dead_workers(engine: Engine, worker_id: str, max_crashes: int, ended: list[Ended],
                      logger: Any, look_at_records: bool = False,
                      record: Callable[[], None] = lambda: None) -> None:
    """Add to ``ended`` the claims of workers that died, and of live ones whose leases ran out;
    then ``record()`` (the caller records ``ended``), then bury the records of dead workers
    (with ``look_at_records``, of those that held no job too).

    Appended one by one: should the storage fail midway, those found so far are still recorded.
    Recorded before any burial: a worker shown reaped has had its jobs reclaimed (and their
    events logged), and one whose jobs could not be recorded is not shown reaped.
    """
    registry = engine.workers
    dead: dict[str, bool] = {}
    held: dict[str, list[str]] = {}
    # First the owners of others' claims (one row each): the claims themselves are read only
    # when one of them has a dead worker or an expired lease, which is seldom.
    owners = engine.holders(worker_id)
    for owner in owners:
        worker = worker_of(owner)
        if worker not in dead:
            dead[worker] = registry.is_dead(worker)
    reaping = any(expired or dead[worker_of(owner)] for owner, expired in owners.items())
    for claim in engine.held() if reaping else ():
        worker = worker_of(claim.owner)
        if worker == worker_id:
            continue
        if worker not in dead:
            dead[worker] = registry.is_dead(worker)
        if dead[worker]:
            held.setdefault(worker, []).append(claim.job_id)
            cause = f"worker {worker} died"
        elif claim.lease_expired:
            cause = f"lease expired: worker {worker} stopped renewing it"
        else:
            continue
        # A prefetched claim never started: given back uncharged.
        change = crash(cause, claim.token, max_crashes) if claim.started else released
        ended.append(Ended(claim.job_id, claim.token, change,
                           {"cause": cause, "reaped_from": worker}))
    try:
        if look_at_records:  # workers that died holding no job: only their records tell
            for worker in registry.recorded():
                if worker != worker_id and worker not in dead and registry.is_dead(worker):
                    held[worker] = []
    except OSError as exc:  # only what `jobq workers` shows is at stake, not the jobs
        logger.warning("worker.records_unreadable", error=str(exc))
        return
    if not held:
        return
    record()
    now = engine.now()  # the clock (a round trip on a server) only to bury someone
    try:
        for worker, jobs in held.items():
            if registry.bury(worker, by=worker_id, jobs=jobs, now=now):
                logger.info("worker.found_dead", dead_worker=worker, jobs=len(jobs))
    except OSError as exc:
        logger.warning("worker.records_unreadable", error=str(exc))
