"""Purge in a queue directory: delete finished jobs (index row and state snapshot) in short
transactions, so a large purge never holds the write lock for long.

It also counts the records it made dead (meta ``purged_since_compaction``), from which a worker
tells when compacting is worth it (:func:`jobq.local.compaction.dead_bytes`); compaction then frees
their log records.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

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
            ids = [job_id for job_id, _ in rows]
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
            move_counts(conn, None, Counter({Status(status): -n for status, n
                                             in Counter(s for _, s in rows).items()}))
            conn.executemany("DELETE FROM Dict WHERE key = CAST(? AS BLOB)",
                             [(i.encode(),) for i in ids])
            conn.executemany("DELETE FROM dependencies WHERE child = ?", [(i,) for i in ids])
            if ids:  # their records are dead now: see compaction.dead_bytes
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                             " DO UPDATE SET value = value + excluded.value",
                             (PURGED_KEY, len(ids)))
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            return total
