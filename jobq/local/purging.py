"""Purge in a queue directory: delete finished jobs (index row and state snapshot) in short
transactions, so a large purge never holds the write lock for long.

It also counts the records it made dead (meta ``purged_since_compaction``), from which a worker
tells when compacting is worth it (:func:`jobq.local.compaction.dead_bytes`); compaction then frees
their log records. Jobs past their retention expiry (:mod:`jobq.local.retention`) are deleted
the same way, a batch per worker upkeep step (:func:`expire`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import retention
from .compaction import PURGED_KEY
from ..state import Status
from .state_db import move_counts

if TYPE_CHECKING:
    from .parts import Parts

PURGE_BATCH = 1_000


def purge(engine: Parts, statuses: frozenset[Status], updated_before: float) -> int:
    """Delete the jobs in ``statuses`` (finished ones) last updated before ``updated_before``."""
    store = engine.store
    store.catch_up()  # a duplicate record indexed after the purge would bring a job back
    wanted = sorted(s.value for s in statuses)
    marks = ", ".join("?" * len(wanted))
    total = 0
    while True:
        with store.transaction() as conn:
            rows = conn.execute(
                f"SELECT job_id, status FROM jobs WHERE status IN ({marks}) AND updated_at < ?"
                " LIMIT ?", (*wanted, updated_before, PURGE_BATCH)).fetchall()
            delete_jobs(conn, rows)
        total += len(rows)
        if len(rows) < PURGE_BATCH:
            return total


def expire(engine: Parts, now: float, limit: int) -> int:
    """Delete up to ``limit`` jobs past their retention expiry at ``now``, in one
    transaction; how many."""
    store = engine.store
    with store.reading():  # the usual answer, "none", without the write lock
        if not retention.any_expired(store.conn, now):
            return 0
    store.catch_up()  # as purge: a record indexed after would bring the job back
    with store.transaction() as conn:
        rows = retention.expired(conn, now, limit)
        delete_jobs(conn, rows)
    return len(rows)


def delete_jobs(conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> None:
    """Inside a write transaction: delete finished jobs, given as (job id, status): their
    rows, snapshots (results, checkpoints), parents lists, retention rows and keys."""
    ids = [(job_id,) for job_id, _ in rows]
    conn.executemany("DELETE FROM jobs WHERE job_id = ?", ids)
    move_counts(conn, None, Counter({Status(status): -n for status, n
                                     in Counter(s for _, s in rows).items()}))
    conn.executemany("DELETE FROM Dict WHERE key = CAST(? AS BLOB)",
                     [(i.encode(),) for i, in ids])
    conn.executemany("DELETE FROM dependencies WHERE child = ?", ids)
    conn.executemany("DELETE FROM retention WHERE job_id = ?", ids)
    # Their keys too: the id of a purged job may be used again, and a new job of that id must
    # not hold the old one's unique key nor count under its concurrency key.
    conn.executemany("DELETE FROM job_keys WHERE job_id = ?", ids)
    if ids:  # their records are dead now: see compaction.dead_bytes
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                     " DO UPDATE SET value = value + excluded.value", (PURGED_KEY, len(ids)))
