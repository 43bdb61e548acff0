"""Limits per key in PostgreSQL: ``jobq_limits`` and ``jobq_job_keys`` (schema version 5).

The plain claim (:mod:`jobq.postgres.settle`) takes nothing while its queue has a limit set
(its ``ids`` CTE is guarded by ``NOT EXISTS`` on ``jobq_limits``, one index probe): a queue
without limits claims exactly as before. A claim that took nothing asks :func:`active`, and if
limits are set, picks its jobs here (:func:`pick`), in the claim's transaction:

* every limit row of the queue is locked ``FOR UPDATE`` (in key order): claimers of a queue
  with limits take turns, so the count of running jobs of a key, read under that lock, cannot
  be raced by another claimer between the count and the claim (``SKIP LOCKED`` alone would let
  two claimers each see one free slot and both take it). Counting under a lock was preferred
  to a counter column kept by every path that ends a running job (settle, reaper, cancel):
  the count reads the running jobs of the queue, as many as its claims held, and a crashed
  holder's slot is free as soon as the reaper's transaction ends its claim;
* plain ready jobs (no key, or a key with no limit) are the first of the ready index whose
  key has no limit; each limited key gives its first ready jobs, as many as its room (the
  concurrency left, and the starts left in its rate window); the lot merged by priority, then
  arrival, up to the claim's size.

A unique key is taken under a transaction advisory lock of (queue, key): of two producers at
once, the second waits for the first one's commit, then finds its job among the unfinished
ones (``jobq_jobs`` holds no finished job) and returns its id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from ..limits import Limit
from .append import Appender, split
from .db import Db
from .jobs import HELD_READY, LOCK_KEY, NOW

MIGRATION = (
    """CREATE TABLE jobq_limits (
        queue text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
        concurrency integer, rate integer, per double precision,
        window_start double precision NOT NULL DEFAULT 0,
        window_count integer NOT NULL DEFAULT 0,
        PRIMARY KEY (queue, key))""",
    """CREATE TABLE jobq_job_keys (
        queue text COLLATE "C" NOT NULL, job_id text COLLATE "C" NOT NULL,
        concurrency_key text COLLATE "C", unique_key text COLLATE "C",
        PRIMARY KEY (queue, job_id))""",
    "CREATE INDEX jobq_job_keys_concurrency ON jobq_job_keys (queue, concurrency_key)"
    " WHERE concurrency_key IS NOT NULL",
    "CREATE INDEX jobq_job_keys_unique ON jobq_job_keys (queue, unique_key)"
    " WHERE unique_key IS NOT NULL",
)

# Version 9: each unfinished job's concurrency key on its row, so that a claim of a limited key
# seeks its next jobs in this index (LIMIT its free slots) instead of sorting all of them, and
# the running count reads jobq_jobs alone. Plain jobs have no entry in it.
KEY_COLUMN = (
    'ALTER TABLE jobq_jobs ADD COLUMN concurrency_key text COLLATE "C"',
    "UPDATE jobq_jobs j SET concurrency_key = k.concurrency_key FROM jobq_job_keys k"
    " WHERE k.queue = j.queue AND k.job_id = j.job_id AND k.concurrency_key IS NOT NULL",
    "CREATE INDEX jobq_jobs_keyed_ready ON jobq_jobs (queue, concurrency_key, priority DESC,"
    " seq) WHERE ready AND concurrency_key IS NOT NULL",
)

# Version 10: each job of a key that has a limit is ``held`` (the directory engine's held_back),
# and the ready index holds the ready jobs that are not: the plain claim of a queue with limits
# (``_PLAIN``) never walks past the ready jobs of limited keys, however many wait for their
# slots; those are found by the keyed index (``_KEYED``). ``held`` is true exactly when the
# job's key has a limit: set and cleared by ``put`` and ``remove``, and by the writers of a keyed
# job's row (``append_keyed``, ``jobq.postgres.jobs.unfinish``), each under the key's lock
# (:data:`jobq.postgres.jobs.LOCK_KEY`), so that none misses another's commit.
HELD = (
    "ALTER TABLE jobq_jobs ADD COLUMN held boolean NOT NULL DEFAULT false",
    "UPDATE jobq_jobs j SET held = true FROM jobq_limits l WHERE l.queue = j.queue"
    " AND l.key = j.concurrency_key",
    "DROP INDEX jobq_jobs_ready",
    "CREATE INDEX jobq_jobs_plain_ready ON jobq_jobs (queue, priority DESC, seq)"
    " WHERE ready AND NOT held",
)
# A job of the queue is ready (to claim now, within its limits or not): two index probes.
ANY_READY = ("(EXISTS (SELECT 1 FROM jobq_jobs WHERE queue = %(q)s AND ready AND NOT held)"
             f" OR EXISTS (SELECT 1 FROM jobq_jobs WHERE queue = %(q)s AND {HELD_READY}))")
_HOLD = ("UPDATE jobq_jobs j SET held = %s FROM jobq_job_keys k WHERE k.queue = %s"
         " AND k.concurrency_key = %s AND j.queue = k.queue AND j.job_id = k.job_id"
         " AND j.held <> %s")

NO_LIMITS = "NOT EXISTS (SELECT 1 FROM jobq_limits WHERE queue = %(q)s)"

_RUNNING = ("SELECT concurrency_key, count(*) FROM jobq_jobs WHERE queue = %s"
            " AND status = 'running' AND concurrency_key IS NOT NULL GROUP BY concurrency_key")
_PLAIN = ("SELECT j.job_id, j.priority, j.seq FROM jobq_jobs j WHERE j.queue = %(q)s"
          " AND j.ready AND NOT j.held AND (j.concurrency_key IS NULL OR NOT EXISTS (SELECT 1"
          " FROM jobq_limits l"
          " WHERE l.queue = j.queue AND l.key = j.concurrency_key))"
          " ORDER BY j.priority DESC, j.seq LIMIT %(n)s FOR UPDATE OF j SKIP LOCKED")
_KEYED = ("SELECT j.job_id, j.priority, j.seq FROM jobq_jobs j WHERE j.queue = %(q)s"
          " AND j.concurrency_key = %(key)s AND j.ready ORDER BY j.priority DESC, j.seq"
          " LIMIT %(n)s FOR UPDATE OF j SKIP LOCKED")


def active(conn: psycopg.Connection[Any], queue: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM jobq_limits WHERE queue = %s)", (queue,),
                       prepare=True).fetchone()
    return bool(row and row[0])


def pick(conn: psycopg.Connection[Any], queue: str, start: int, prefetch: int, now: float
         ) -> list[str]:
    """Inside the claim's transaction, limits set: the ids of up to ``start`` ready jobs to
    start and ``prefetch`` more to prefetch, in that order, within every limit (see the module
    docstring). Jobs of a limited key are only started, never prefetched: a prefetched claim
    holds a slot while its child runs the jobs before it."""
    limited = conn.execute(
        "SELECT key, concurrency, rate, per, window_start, window_count FROM jobq_limits"
        " WHERE queue = %s ORDER BY key FOR UPDATE", (queue,)).fetchall()
    running = dict(conn.execute(_RUNNING, (queue,)).fetchall())
    plain = [(-prio, seq, job_id, None) for job_id, prio, seq in
             conn.execute(_PLAIN, {"q": queue, "n": start + prefetch}).fetchall()]
    offered: list[tuple[int, int, str, str | None]] = []
    for key, concurrency, rate, per, begun, count in limited:
        room = _room(start, running.get(key, 0), concurrency, rate, per, begun, count, now)
        if room > 0:
            offered += [(-prio, seq, job_id, key) for job_id, prio, seq in
                        conn.execute(_KEYED, {"q": queue, "key": key, "n": room}).fetchall()]
    started = sorted(plain + offered)[:start]
    kept = {job_id for _, _, job_id, _ in started}
    chosen = started + [r for r in plain if r[2] not in kept][:prefetch]
    taken: dict[str, int] = {}
    for *_, key in started:
        if key is not None:
            taken[key] = taken.get(key, 0) + 1
    for key, k in taken.items():
        conn.execute("UPDATE jobq_limits SET window_start = CASE WHEN %(now)s >= window_start"
                     " + coalesce(per, 0) THEN %(now)s ELSE window_start END, window_count ="
                     " CASE WHEN %(now)s >= window_start + coalesce(per, 0) THEN %(k)s ELSE"
                     " window_count + %(k)s END WHERE queue = %(q)s AND key = %(key)s"
                     " AND rate IS NOT NULL", {"now": now, "k": k, "q": queue, "key": key})
    return [job_id for _, _, job_id, _ in chosen]


def _room(n: int, running: int, concurrency: int | None, rate: int | None,
          per: float | None, start: float, count: int, now: float) -> int:
    """How many more jobs of a key may start now (at most ``n``)."""
    room = n
    if concurrency is not None:
        room = min(room, concurrency - running)
    if rate is not None and per is not None:
        room = min(room, rate - (0 if now >= start + per else count))
    return room


def claimable(db: Db, queue: str) -> bool:
    """For has_ready, ready jobs found and limits set: is one of them within its limits now?
    (Without this, an idle worker would claim again and again the jobs of a full key.)"""
    if db.execute(f"SELECT EXISTS ({_PLAIN.split(' ORDER BY')[0]})",
                  {"q": queue, "n": 1})[0][0]:
        return True
    running = dict(db.execute(_RUNNING, (queue,)))
    now = float(db.execute(f"SELECT {NOW}")[0][0])
    for key, concurrency, rate, per, start, count in db.execute(
            "SELECT key, concurrency, rate, per, window_start, window_count FROM jobq_limits"
            " WHERE queue = %s", (queue,)):
        if _room(1, running.get(key, 0), concurrency, rate, per, start, count, now) > 0 \
                and db.execute(f"SELECT EXISTS ({_KEYED.split(' ORDER BY')[0]})",
                               {"q": queue, "key": key})[0][0]:
            return True
    return False


class PgLimits:
    """:class:`jobq.engine.Limits` of one named queue."""

    def __init__(self, db: Db, queue: str, appender: Appender, key: bytes | None,
                 max_body: int, stored: Callable[[], None]) -> None:
        self._db = db
        self._stored = stored  # wakes the listening workers, after the commit
        self._queue = queue
        self._appender = appender
        self._key = key
        self._max_body = max_body

    def put(self, limit: Limit) -> None:
        with self._db.transaction("store a limit") as conn:
            conn.execute(LOCK_KEY, (self._queue, limit.key))
            conn.execute(
                "INSERT INTO jobq_limits (queue, key, concurrency, rate, per)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (queue, key) DO UPDATE SET"
                " concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per",
                (self._queue, limit.key, limit.concurrency, limit.rate, limit.per))
            conn.execute(_HOLD, (True, self._queue, limit.key, True))

    def remove(self, key: str) -> bool:
        with self._db.transaction("remove a limit") as conn:
            conn.execute(LOCK_KEY, (self._queue, key))
            removed = conn.execute("DELETE FROM jobq_limits WHERE queue = %s AND key = %s"
                                   " RETURNING key", (self._queue, key)).fetchone()
            conn.execute(_HOLD, (False, self._queue, key, False))
        if removed:
            self._stored()  # its jobs are plain ready ones now
        return removed is not None

    def all(self) -> list[Limit]:
        rows = self._db.execute("SELECT key, concurrency, rate, per FROM jobq_limits"
                                " WHERE queue = %s ORDER BY key", (self._queue,))
        return [Limit(k, c, r, p) for k, c, r, p in rows]

    def append_keyed(self, frame: bytes, job_id: str, concurrency_key: str | None,
                     unique_key: str | None) -> str:
        jobs = split([frame], self._key, self._max_body)
        with self._db.transaction("store a job (nothing was stored)") as conn:
            if concurrency_key is not None:  # first: put and remove take this one alone
                conn.execute(LOCK_KEY, (self._queue, concurrency_key))
            if unique_key is not None:
                # The (int4, int4) space: never the (bigint) keys of jobq's other locks.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                             (self._queue, unique_key))
                holder = conn.execute(
                    "SELECT k.job_id FROM jobq_job_keys k JOIN jobq_jobs j ON j.queue = k.queue"
                    " AND j.job_id = k.job_id WHERE k.queue = %s AND k.unique_key = %s LIMIT 1",
                    (self._queue, unique_key)).fetchone()
                if holder is not None:
                    return str(holder[0])
                conn.execute("UPDATE jobq_job_keys SET unique_key = NULL WHERE queue = %s"
                             " AND unique_key = %s", (self._queue, unique_key))
            if conn.execute("SELECT 1 FROM jobq_payloads WHERE queue = %s AND job_id = %s",
                            (self._queue, job_id)).fetchone():
                return job_id  # its first record wins
            conn.execute("INSERT INTO jobq_job_keys (queue, job_id, concurrency_key, unique_key)"
                         " VALUES (%s, %s, %s, %s) ON CONFLICT (queue, job_id) DO NOTHING",
                         (self._queue, job_id, concurrency_key, unique_key))
            self._appender.store(conn, self._queue, jobs)
            if concurrency_key is not None:
                conn.execute("UPDATE jobq_jobs SET concurrency_key = %(key)s, held = EXISTS"
                             " (SELECT 1 FROM jobq_limits WHERE queue = %(q)s AND key = %(key)s)"
                             " WHERE queue = %(q)s AND job_id = %(id)s",
                             {"key": concurrency_key, "q": self._queue, "id": job_id})
        self._stored()
        return job_id
