"""Purge given finished jobs of a queue directory (the dashboard's "purge" of dead letters):
as :mod:`jobq.local.purging` does by age, here by id, :data:`PURGE_BATCH` ids a transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .purging import PURGE_BATCH, delete_jobs
from ..state import FINISHED, Status

if TYPE_CHECKING:
    from .parts import Parts


def purge_jobs(engine: Parts, ids: Sequence[str], statuses: frozenset[Status]) -> int:
    """Delete those of ``ids`` whose status is one of the finished ``statuses``; how many."""
    store = engine.store
    store.catch_up()  # a duplicate record indexed after the purge would bring a job back
    wanted = sorted(s.value for s in statuses if s in FINISHED)
    if not wanted:
        return 0
    total = 0
    for start in range(0, len(ids), PURGE_BATCH):
        part = list(dict.fromkeys(ids[start:start + PURGE_BATCH]))
        with store.transaction() as conn:
            rows = conn.execute(
                f"SELECT job_id, status FROM jobs WHERE job_id IN ({', '.join('?' * len(part))})"
                f" AND status IN ({', '.join('?' * len(wanted))})", (*part, *wanted)).fetchall()
            delete_jobs(conn, rows)
        total += len(rows)
    return total
