"""Limits per key in a queue directory: tables of the state database (store schema 6).

``limits`` holds each key's concurrency and rate limits with its current rate window;
``job_keys`` each keyed job's concurrency and unique keys, written in the transaction that
appends the job's record to the log (under the state database's write lock, so two producers
of one unique key are serialised: the second one, catching the index up first, finds the
first one's job); ``held_back`` the ready jobs of a limited key, taken out of ``ready``.

The claim path (:func:`take`) is unchanged while no limit is set: :func:`active` is one
lookup in an empty table. With limits set, the claim takes the first ready rows as before;
those of a limited key move to ``held_back`` (so they never clog the head of ``ready`` for
the jobs behind them) and the claim takes the rest from ``ready``; then each limited key with
room (running jobs counted under the write lock, the rate window read) gives its first held
jobs, merged with the plain ones by priority, then arrival. A crashed holder's job, once
reaped, is no longer running: its slot is free at the next claim.

Neither table is rebuilt from the log: a state database made again from the log loses the
keys of its jobs (they run unlimited), as it loses dependencies and results.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import index, snapshots
from ..state import FINISHED

if TYPE_CHECKING:
    from ..limits import Limit
    from .log import Log
    from .store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS limits (
    key TEXT PRIMARY KEY, concurrency INTEGER, rate INTEGER, per REAL,
    window_start REAL NOT NULL DEFAULT 0, window_count INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_keys (
    job_id TEXT PRIMARY KEY, concurrency_key TEXT, unique_key TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_keys_unique ON job_keys (unique_key)
    WHERE unique_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS held_back (
    key TEXT NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (key, job_id)) WITHOUT ROWID;
"""
TABLES = {"limits", "job_keys", "held_back"}

_FINISHED = tuple(s.value for s in FINISHED)
# A held job is due: queued, or failed and due for its retry (a ready row of either status).
_DUE = "j.status IN ('queued', 'failed')"
_TAKE_READY = ("DELETE FROM ready WHERE (neg_priority, seq) IN (SELECT neg_priority, seq FROM"
               " ready ORDER BY neg_priority, seq LIMIT ?) RETURNING neg_priority, seq, job_id")
# CROSS JOIN: from the running jobs' status index entries (as many as the claims held), not
# from every keyed job.
_RUNNING = ("SELECT k.concurrency_key, COUNT(*) FROM jobs j CROSS JOIN job_keys k"
            " ON k.job_id = j.job_id WHERE j.status = 'running'"
            " AND k.concurrency_key IS NOT NULL GROUP BY k.concurrency_key")


def active(conn: sqlite3.Connection) -> bool:
    """Is any limit set? (The claim path's only cost when none is.)"""
    return conn.execute("SELECT 1 FROM limits LIMIT 1").fetchone() is not None


def take(conn: sqlite3.Connection, start: int, prefetch: int, now: float
         ) -> list[tuple[int, int, str]]:
    """Inside the claim's write transaction, limits set: up to ``start`` jobs to start and
    ``prefetch`` more to prefetch, (-priority, seq, job id), in that order, taken out of
    ``ready`` and ``held_back`` within every limit.

    Jobs of a limited key are only started, never prefetched: a prefetched claim holds a slot
    while its child runs the jobs before it, so a limit of 3 could be one child running three
    jobs one after the other while the other workers wait."""
    n = start + prefetch
    limited = {row[0]: row[1:] for row in conn.execute(
        "SELECT key, concurrency, rate, per, window_start, window_count FROM limits")}
    plain: list[tuple[int, int, str]] = []
    while len(plain) < n:
        rows = conn.execute(_TAKE_READY, (n - len(plain),)).fetchall()
        if not rows:
            break
        keyed = _keys_of(conn, [job_id for _, _, job_id in rows])
        held = [(keyed[job_id], job_id) for _, _, job_id in rows if keyed.get(job_id) in limited]
        plain += [r for r in rows if keyed.get(r[2]) not in limited]
        if not held:
            break
        conn.executemany("INSERT OR IGNORE INTO held_back (key, job_id) VALUES (?, ?)", held)
    plain.sort()
    running = dict(conn.execute(_RUNNING).fetchall())
    offered: list[tuple[int, int, str, str | None]] = []
    for key, (concurrency, rate, per, begun, count) in limited.items():
        room = _room(start, running.get(key, 0), concurrency, rate, per, begun, count, now)
        if room > 0:
            offered += [(*row, key) for row in _held(conn, key, room)]
    if not offered:
        return plain
    started = sorted([(*r, None) for r in plain] + offered)[:start]
    kept = {job_id for _, _, job_id, _ in started}
    rest = [r for r in plain if r[2] not in kept]
    chosen = [r[:3] for r in started] + rest[:prefetch]
    conn.executemany("INSERT INTO ready (neg_priority, seq, job_id) VALUES (?, ?, ?)",
                     rest[prefetch:])
    from_held = [(neg, seq, job_id, key) for neg, seq, job_id, key in started
                 if key is not None]
    conn.executemany("DELETE FROM held_back WHERE key = ? AND job_id = ?",
                     [(key, job_id) for _, _, job_id, key in from_held])
    # A job requeued while it was held is in ready too: never claimed twice.
    conn.executemany("DELETE FROM ready WHERE neg_priority = ? AND seq = ?",
                     [(neg, seq) for neg, seq, _, _ in from_held])
    for key, k in Counter(key for _, _, _, key in from_held).items():
        _, rate, per, _, _ = limited[key]
        if rate is not None:
            conn.execute("UPDATE limits SET window_start = CASE WHEN ? >= window_start + ?"
                         " THEN ? ELSE window_start END, window_count = CASE WHEN"
                         " ? >= window_start + ? THEN ? ELSE window_count + ? END WHERE key = ?",
                         (now, per, now, now, per, k, k, key))
    return chosen


def _room(n: int, running: int, concurrency: int | None, rate: int | None, per: float | None,
          start: float, count: int, now: float) -> int:
    """How many more jobs of a key may start now (at most ``n``)."""
    room = n
    if concurrency is not None:
        room = min(room, concurrency - running)
    if rate is not None and per is not None:
        room = min(room, rate - (0 if now >= start + per else count))
    return room


def _keys_of(conn: sqlite3.Connection, job_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in snapshots.chunks(job_ids):
        found.update(conn.execute(
            "SELECT job_id, concurrency_key FROM job_keys"
            f" WHERE job_id IN ({snapshots.marks(len(part))})"
            " AND concurrency_key IS NOT NULL", part).fetchall())
    return found


def _held(conn: sqlite3.Connection, key: str, room: int) -> list[tuple[int, int, str]]:
    """The first ``room`` due jobs held back for ``key``; rows of jobs no longer due
    (cancelled, purged, claimed after a requeue) are dropped on the way."""
    conn.execute("DELETE FROM held_back WHERE key = ? AND job_id NOT IN (SELECT h.job_id FROM"
                 " held_back h CROSS JOIN jobs j ON j.job_id = h.job_id WHERE h.key = ?"
                 f" AND {_DUE})", (key, key))
    return conn.execute(
        "SELECT -j.priority, j.seq, j.job_id FROM held_back h CROSS JOIN jobs j"
        " ON j.job_id = h.job_id WHERE h.key = ? ORDER BY j.priority DESC, j.seq LIMIT ?",
        (key, room)).fetchall()


def claimable(conn: sqlite3.Connection, now: float) -> bool:
    """Is a held-back job within its key's limits now? (For has_ready, ready being empty.)"""
    if conn.execute("SELECT 1 FROM held_back LIMIT 1").fetchone() is None:
        return False
    running = dict(conn.execute(_RUNNING).fetchall())
    for key, concurrency, rate, per, start, count in conn.execute(
            "SELECT key, concurrency, rate, per, window_start, window_count FROM limits"
            " WHERE key IN (SELECT DISTINCT key FROM held_back)").fetchall():
        if _room(1, running.get(key, 0), concurrency, rate, per, start, count, now) > 0 \
                and conn.execute("SELECT 1 FROM held_back h CROSS JOIN jobs j ON j.job_id ="
                                 f" h.job_id WHERE h.key = ? AND {_DUE} LIMIT 1",
                                 (key,)).fetchone():
            return True
    return False


class LocalLimits:
    """:class:`jobq.engine.Limits` in the state database: each call one write transaction."""

    def __init__(self, store: Store, log_: Log) -> None:
        self._store = store
        self._log = log_

    def put(self, limit: Limit) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO limits (key, concurrency, rate, per) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET concurrency = excluded.concurrency,"
                " rate = excluded.rate, per = excluded.per",
                (limit.key, limit.concurrency, limit.rate, limit.per))

    def remove(self, key: str) -> bool:
        """Forget the limits; the key's held-back jobs go back to ``ready`` at once."""
        with self._store.transaction() as conn:
            gone = conn.execute("DELETE FROM limits WHERE key = ?", (key,)).rowcount == 1
            conn.execute("INSERT OR IGNORE INTO ready (neg_priority, seq, job_id)"
                         " SELECT -j.priority, j.seq, j.job_id FROM held_back h CROSS JOIN jobs j"
                         f" ON j.job_id = h.job_id WHERE h.key = ? AND {_DUE}",
                         (key,))
            conn.execute("DELETE FROM held_back WHERE key = ?", (key,))
        return gone

    def all(self) -> list[Limit]:
        with self._store.reading():
            rows = self._store.conn.execute(
                "SELECT key, concurrency, rate, per FROM limits ORDER BY key").fetchall()
        from ..limits import Limit  # a dataclass: built when limits are read, not at start

        return [Limit(*row) for row in rows]

    def append_keyed(self, frame: bytes, job_id: str, concurrency_key: str | None,
                     unique_key: str | None) -> str:
        """The keys and the record in one write transaction: the record is appended to the
        log under the write lock, so the next producer of the unique key, catching the index
        up in its own transaction, finds this job."""
        self._store.catch_up()
        with self._store.transaction() as conn:
            self._catch_up_in(conn)
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone():
                return job_id  # its first record wins
            if unique_key is not None:
                holder = _unique_holder(conn, unique_key)
                if holder is not None:
                    return holder
            conn.execute("INSERT OR REPLACE INTO job_keys (job_id, concurrency_key, unique_key)"
                         " VALUES (?, ?, ?)", (job_id, concurrency_key, unique_key))
            self._log.append([frame], None)
        return job_id

    def _catch_up_in(self, conn: sqlite3.Connection) -> None:
        for _ in range(1000):  # a bound, never reached: each batch moves the covered position
            if not self._log.has_more(index.covered(conn)):
                return
            _, moved, _ = index.index_batch(conn, self._store.shelf, self._log,
                                            self._store._clock)
            if not moved:
                return  # an incomplete tail (a write in progress): not a job of this key's


def _unique_holder(conn: sqlite3.Connection, unique_key: str) -> str | None:
    """The job of ``unique_key`` that has not ended, if one; frees the key of those that did."""
    for job_id, status in conn.execute(
            "SELECT k.job_id, j.status FROM job_keys k LEFT JOIN jobs j ON j.job_id = k.job_id"
            " WHERE k.unique_key = ?", (unique_key,)).fetchall():
        if status is not None and status not in _FINISHED:
            return str(job_id)
    conn.execute("UPDATE job_keys SET unique_key = NULL WHERE unique_key = ?", (unique_key,))
    return None


def keys_of(conn: sqlite3.Connection, job_id: str) -> tuple[Any, Any]:
    """A job's (concurrency key, unique key): None, None if it has none."""
    row = conn.execute("SELECT concurrency_key, unique_key FROM job_keys WHERE job_id = ?",
                       (job_id,)).fetchone()
    return (row[0], row[1]) if row else (None, None)
