"""What the worker runtime asks of the claims it holds: renew their leases, list who runs what, and
which of them were asked to cancel.

Leases are hints (a supervisor reaps a dead worker's claims by its liveness lock, and lease expiry
is the backstop for a stuck one); the claim token fences every write (:mod:`jobq.local.settle`).
"""

from __future__ import annotations

from typing import Any

from ..state import Status
from .state_db import StateDB

# Claims of a worker's children are owned by "<worker id>/<n>": this matches a worker's own claims
# and its children's with one index range.
_OWNED = "(owner = ? OR (owner >= ? AND owner < ?))"


def _owned(owner: str) -> tuple[str, str, str]:
    return owner, owner + "/", owner + "0"  # "0" is the character after "/"


def renew(db: StateDB, owner: str, lease_seconds: float, now: float) -> int:
    """Extend the lease of every job ``owner`` (or its children) runs; return how many."""
    with db.write() as conn:
        return conn.execute(f"UPDATE jobs SET lease_expires = ? WHERE status = ? AND {_OWNED}",
                            (now + lease_seconds, Status.RUNNING.value, *_owned(owner))
                            ).rowcount


def running(db: StateDB, owner: str | None = None) -> list[tuple[str, int, str, float]]:
    """(job id, claim token, owner, lease expiry) of running jobs, of one owner or all."""
    with db.reading():
        sql = "SELECT job_id, token, owner, lease_expires FROM jobs WHERE status = ?"
        args: tuple[Any, ...] = (Status.RUNNING.value,)
        if owner is not None:
            sql, args = sql + " AND owner = ?", (*args, owner)
        return db.conn.execute(sql, args).fetchall()


def running_claims(db: StateDB) -> list[tuple[str, int, str, float, bool]]:
    """(job id, claim token, owner, lease expiry, started) of every running job.

    ``started`` is False for a prefetched claim its owner has not reported started: if the
    owner died, that job never ran and is given back without charging an attempt.
    """
    with db.reading():
        return [(*row[:4], not row[4]) for row in db.conn.execute(
            "SELECT job_id, token, owner, lease_expires, prefetched FROM jobs"
            " WHERE status = 'running'")]


def cancelling(db: StateDB, owner: str) -> set[tuple[str, int]]:
    """(job id, claim token) of the jobs ``owner`` (or its children) holds that were asked to
    cancel: with the token, so that a later claim of the same job is not taken for this one."""
    with db.reading():
        return set(db.conn.execute(
            f"SELECT job_id, token FROM jobs WHERE status = ? AND {_OWNED}"
            " AND cancel_requested = 1", (Status.RUNNING.value, *_owned(owner))))
