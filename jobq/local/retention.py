"""Result retention in a queue directory: the ``retention`` table of the state database.

A row per job enqueued with a ttl (:mod:`jobq.retention`): its ``result_ttl`` and
``failure_ttl``, and once it ended its ``expires_at``, set by the transaction that ends it
(:func:`on_transitions`, called by :func:`jobq.local.settle.write_transitions`) and cleared if
it is retried. Workers' upkeep seeks the partial index on ``expires_at`` (:func:`expire`) and
deletes the jobs past it with :func:`jobq.local.purging.delete_jobs`, as ``jobq purge`` does;
compaction frees their log records later.

Rows are written before the job's record is appended, like dependencies: a producer that dies
in between leaves a row naming a fresh id, which never expires. Rebuilding the index from the
log keeps this table (it is in the same file).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from ..retention import PARENT_GRACE
from ..state import FINISHED, JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS retention (
    job_id TEXT PRIMARY KEY, result_ttl REAL, failure_ttl REAL, expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retention_by_expiry ON retention (expires_at)
    WHERE expires_at IS NOT NULL;
"""

_FINISHED = "(" + ", ".join(f"'{s.value}'" for s in sorted(FINISHED)) + ")"
# The expiry of a job that ended with ``status`` at ``at``: NULL (never) for a ttl of None.
_EXPIRY = ("CASE WHEN {status} = 'dead' THEN {at} + failure_ttl"
           f" WHEN {{status}} IN {_FINISHED} THEN {{at}} + result_ttl ELSE NULL END")


def keep(conn: sqlite3.Connection, job_ids: Sequence[str], result_ttl: float | None,
         failure_ttl: float | None) -> None:
    """Inside a write transaction: record the ttls of ``job_ids``; those already ended
    (the rows written after their records: enqueue_many) expire from their end time."""
    conn.executemany("INSERT OR REPLACE INTO retention (job_id, result_ttl, failure_ttl)"
                     " VALUES (?, ?, ?)", [(i, result_ttl, failure_ttl) for i in job_ids])
    expiry = _EXPIRY.format(status="j.status", at="j.updated_at")
    conn.executemany(
        f"UPDATE retention SET expires_at = (SELECT {expiry} FROM jobs j"
        " WHERE j.job_id = retention.job_id) WHERE job_id = ?", [(i,) for i in job_ids])


def on_transitions(conn: sqlite3.Connection, new: Iterable[JobState], now: float) -> None:
    """Inside the transaction that writes the new states: set the expiry of the jobs that
    ended, clear it for those that did not (a retry). One probe when no job has a ttl."""
    if conn.execute("SELECT 1 FROM retention LIMIT 1").fetchone() is None:
        return
    conn.executemany(f"UPDATE retention SET expires_at = {_EXPIRY.format(status='?1', at='?2')}"
                     " WHERE job_id = ?3", [(s.status.value, now, s.job_id) for s in new])


def any_expired(conn: sqlite3.Connection, now: float) -> bool:
    """Is a job past its expiry? One seek of the expiry index."""
    return conn.execute("SELECT 1 FROM retention WHERE expires_at IS NOT NULL"
                        " AND expires_at <= ? LIMIT 1", (now,)).fetchone() is not None


def expired(conn: sqlite3.Connection, now: float, limit: int) -> list[tuple[str, str]]:
    """Inside a write transaction: up to ``limit`` (job id, status) of ended jobs past their
    expiry, by the expiry index. Rows naming no job are dropped; parents with a dependent not
    yet ended are kept PARENT_GRACE longer (a child released late reads their results)."""
    rows = conn.execute(
        "SELECT r.job_id, j.status FROM retention r LEFT JOIN jobs j ON j.job_id = r.job_id"
        " WHERE r.expires_at IS NOT NULL AND r.expires_at <= ? ORDER BY r.expires_at LIMIT ?",
        (now, limit)).fetchall()
    found, later, orphans = [], [], []
    for job_id, status in rows:
        if status is None:
            orphans.append((job_id,))
        elif status not in {s.value for s in FINISHED}:  # (cannot be: its end set it)
            later.append((None, job_id))
        elif _has_pending_child(conn, job_id):
            later.append((now + PARENT_GRACE, job_id))
        else:
            found.append((job_id, status))
    conn.executemany("DELETE FROM retention WHERE job_id = ?", orphans)
    conn.executemany("UPDATE retention SET expires_at = ? WHERE job_id = ?", later)
    return found


def _has_pending_child(conn: sqlite3.Connection, parent: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM dependencies d JOIN jobs c ON c.job_id = d.child WHERE d.parent = ?"
        f" AND c.status NOT IN {_FINISHED} LIMIT 1", (parent,)).fetchone() is not None
