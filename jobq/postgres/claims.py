"""What a worker's supervisor asks of the claims its children hold: leases renewed, cancels
requested, the claims themselves. Every lease is judged on the server's clock."""

from __future__ import annotations

import time
from typing import Any

from ..engine import Held
from .db import Db
from .jobs import NOW

# The server's clock read once a statement (an InitPlan), not once a row: a volatile clock and its
# numeric epoch made a read of 500 running claims cost the server ~100 us more.
_NOW_ONCE = f"(SELECT {NOW})"
CANCEL_GENERATION_TTL = 0.05  # seconds a read of the cancel generation is reused (see below)
# For the rest of a transaction, no bitmap scans: a look at the running claims that walks the
# running index in a plain index scan marks the entries of finished jobs dead as it meets them,
# and the next looks skip them. A bitmap scan (what a big jobq_jobs the server never analyzed
# gets planned: its size estimates grow with the table) marks none, so each look read the heap
# pages of every job the queue finished since the last VACUUM again: 116 heap pages a look after
# 2,000 (tests/postgres/test_settle_plans.py), ten looks a second a worker.
_INDEX_SCANS = "SELECT set_config('enable_bitmapscan', 'off', true)"


class CancelGeneration:
    """The queue's cancel number. A worker child reads it before each job it prefetched: a read
    is reused for CANCEL_GENERATION_TTL seconds, so a drain of short jobs does not pay a round
    trip per job, and a cancel is seen at most that much later (a running job still sees its
    flag through :func:`cancel_requested`)."""

    def __init__(self, db: Db, queue: str) -> None:
        self._db, self._queue = db, queue
        self._cached: tuple[float, int] | None = None  # (monotonic read time, value)

    def read(self) -> int:
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < CANCEL_GENERATION_TTL:
            return cached[1]
        found = self._db.execute("SELECT generation FROM jobq_cancels WHERE queue = %s",
                                 (self._queue,))
        value = int(found[0][0]) if found else 0
        self._cached = (now, value)
        return value


def cancel_requested(db: Db, queue: str, job_id: str) -> bool:
    found = db.execute("SELECT cancel_requested FROM jobq_jobs WHERE queue = %s"
                       " AND job_id = %s", (queue, job_id))
    return bool(found and found[0][0])


def cancelling(db: Db, queue: str, owner: str) -> set[tuple[str, int]]:
    """The running claims of ``owner`` (and its children) asked to cancel: (job id, token)."""
    return {(job_id, int(token)) for job_id, token in db.execute(
        "SELECT job_id, token FROM jobq_jobs WHERE queue = %s AND status = 'running'"
        " AND (owner = %s OR (owner >= %s AND owner < %s)) AND cancel_requested",
        (queue, *_owned(owner)))}


def renew(db: Db, queue: str, owner: str, lease_seconds: float) -> int:
    """Extend the leases of ``owner``'s (and its children's) running claims; how many."""
    with db.transaction("renew leases") as conn:
        return conn.execute(
            f"UPDATE jobq_jobs SET lease_expires = {NOW} + %s WHERE queue = %s"
            " AND status = 'running' AND (owner = %s OR (owner >= %s AND owner < %s))",
            (lease_seconds, queue, *_owned(owner))).rowcount


def held(db: Db, queue: str, owner: str | None = None) -> list[Held]:
    """Running claims (of one owner, or all), their leases judged on the server's clock."""
    sql = ("SELECT job_id, token, owner, NOT prefetched, coalesce(lease_expires < "
           f"{_NOW_ONCE}, false) FROM jobq_jobs WHERE queue = %s AND status = 'running'")
    args: tuple[Any, ...] = (queue,)
    if owner is not None:
        sql, args = sql + " AND owner = %s", (*args, owner)
    return [Held(j, int(t), o or "", bool(s), bool(e))
            for j, t, o, s, e in db.execute(sql + " ORDER BY seq", args)]


def holders(db: Db, queue: str, besides: str) -> dict[str, bool]:
    """The owners of running claims but worker ``besides`` and its children (left out by the
    server), each with whether a lease of its ran out: one row an owner, not one a claim, for
    the reaper's every turn."""
    own, first, after = _owned(besides)
    found: dict[str, bool] = {}
    with db.transaction("read the holders of claims") as conn:
        conn.execute(_INDEX_SCANS, prepare=True)
        rows = conn.execute(
            f"SELECT owner, bool_or(coalesce(lease_expires < {_NOW_ONCE}, false)) FROM jobq_jobs"
            " WHERE queue = %s AND status = 'running' AND (owner IS NULL OR owner < %s"
            " OR (owner > %s AND owner < %s) OR owner >= %s) GROUP BY owner",
            (queue, own, own, first, after), prepare=True).fetchall()
    for owner, expired in rows:
        found[owner or ""] = found.get(owner or "", False) or bool(expired)  # NULL as held's ""
    return found


def _owned(owner: str) -> tuple[str, str, str]:
    """A worker's own claims and its children's ("<worker>/<n>") as one index range."""
    return owner, owner + "/", owner + "0"  # "0" is the character after "/"
