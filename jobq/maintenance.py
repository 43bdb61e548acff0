"""Maintenance: purge old finished jobs; compaction (:mod:`jobq.compaction`) then frees their log
records.

:func:`purge` deletes finished jobs (index row and state snapshot) in short transactions, so a
large purge never holds the write lock for long. It also counts the records it made dead
(meta ``purged_since_compaction``), from which a worker tells when compacting is worth it
(:func:`jobq.compaction.dead_bytes`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .compaction import (PURGED_KEY, CompactReport, compact, compaction_steps, dead_bytes,
                         finish_interrupted_compaction)
from .errors import InvalidArgument
from .state import FINISHED, Status
from .state_db import move_counts
from ._logging import get_logger

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["CompactReport", "compact", "compaction_steps", "dead_bytes",
           "finish_interrupted_compaction", "purge"]

log = get_logger(__name__)

PURGE_BATCH = 1_000


# -- purge ------------------------------------------------------------------------------------

def purge(queue: Queue, *, statuses: Iterable[Status], older_than: float,
          now: float | None = None) -> int:
    """Delete jobs in ``statuses`` that finished more than ``older_than`` seconds ago.

    ``updated_at`` is set by a job's final transition and never after, so it is its finishing
    time. Returns how many jobs were deleted; their log records go at the next :func:`compact`.
    """
    wanted = _finished_statuses(statuses)
    if not isinstance(older_than, (int, float)) or isinstance(older_than, bool) \
            or not math.isfinite(older_than) or older_than < 0:
        raise InvalidArgument(f"older_than must be a number of seconds >= 0, not {older_than!r}")
    cutoff = (queue._clock() if now is None else now) - older_than  # the clock updated_at used
    queue.store.catch_up()  # a duplicate record indexed after the purge would bring a job back
    marks = ", ".join("?" * len(wanted))
    total = 0
    while True:
        with queue.store.transaction() as conn:
            rows = conn.execute(
                f"SELECT job_id, status FROM jobs WHERE status IN ({marks}) AND updated_at < ?"
                " LIMIT ?", (*wanted, cutoff, PURGE_BATCH)).fetchall()
            ids = [job_id for job_id, _ in rows]
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
            move_counts(conn, None, Counter({Status(status): -n for status, n
                                             in Counter(s for _, s in rows).items()}))
            conn.executemany("DELETE FROM Dict WHERE key = CAST(? AS BLOB)",
                             [(i.encode(),) for i in ids])
            if ids:  # their records are dead now: see compaction.dead_bytes
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                             " DO UPDATE SET value = value + excluded.value",
                             (PURGED_KEY, len(ids)))
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            break
    log.info("maintenance.purged", count=total, statuses=wanted, older_than=older_than)
    return total


def _finished_statuses(statuses: Iterable[Status]) -> list[str]:
    if isinstance(statuses, str):  # one status (Status is a str too), not its characters
        statuses = [statuses]
    try:
        found = [Status(s) for s in statuses]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"statuses must be job statuses: {exc}") from exc
    refused = [s.value for s in found if s not in FINISHED]
    if refused or not found:
        allowed = ", ".join(sorted(s.value for s in FINISHED))
        raise InvalidArgument(f"purge deletes only finished jobs ({allowed}); got"
                              f" {', '.join(refused) or 'no status'}")
    return sorted({s.value for s in found})
