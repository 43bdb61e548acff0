"""Keeping the index up with the log: catch up, check it on open, rebuild it on doubt.

The log is the truth and the index a cache of it (:mod:`jobq.local.index` derives its rows,
:mod:`jobq.local.rebuild` rebuilds them). These functions run that work in the state database's
transactions: a batch of indexing per write transaction, so readers and workers are never held
behind the whole backlog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import index, rebuild
from .log import Log, Position
from .state_db import StateDB


def covered(db: StateDB) -> Position:
    """The log position up to which the index is complete."""
    with db.reading():
        return index.covered(db.conn)


def check_covered(db: StateDB, log_: Log, db_path: str) -> None:
    """Raise StorageError if the log no longer reaches the position the index covers."""
    with db.reading():
        index.check_covered(db.conn, log_, db_path)


def ensure_index(db: StateDB, log_: Log, clock: Callable[[], float] = time.time) -> bool:
    """On open: rebuild the index if it was lost while job snapshots survive; True if rebuilt.

    Costs a few index seeks when the index is whole.
    """
    with db.reading():
        if not rebuild.index_lost(db.conn):
            return False
    with db.write() as conn:
        if not rebuild.index_lost(conn):
            return False  # another process rebuilt it meanwhile
        rebuild.rebuild(conn, db.shelf, log_, clock(), reason="index tables missing or empty")
    return True


def rebuild_index(db: StateDB, log_: Log, clock: Callable[[], float] = time.time) -> int:
    """Rebuild the index from the log and the surviving snapshots; return how many jobs.

    For an index that lost rows in a way :func:`ensure_index` cannot see. Jobs running now
    are queued again, and the results of their current attempts will not count.
    """
    with db.write() as conn:
        return rebuild.rebuild(conn, db.shelf, log_, clock(), reason="requested")


def catch_up(db: StateDB, log_: Log, clock: Callable[[], float] = time.time,
             batches: int | None = None) -> int:
    """Index the records appended since the covered position (all of them, or ``batches``
    transactions' worth); return how many jobs.

    Damaged ranges are copied aside and skipped; a torn tail is cut (see Log.repair_tail).
    """
    total = 0
    while log_.has_more(covered(db)) and batches != 0:
        batches = None if batches is None else batches - 1
        with db.write() as conn:
            indexed, moved, tail = index.index_batch(conn, db.shelf, log_, clock)
        total += indexed
        repaired = tail is not None and log_.repair_tail(tail)
        if not (moved or repaired) and (tail is None or not log_.has_more(tail)):
            break  # nothing to index now; an incomplete tail was completed meanwhile or is gone
    return total


def quarantined(db: StateDB) -> list[dict[str, Any]]:
    """The damaged log ranges copied aside, in log order."""
    with db.reading():
        cur = db.conn.execute("SELECT segment, offset, end_offset, reason, saved_to, found_at"
                              " FROM quarantine ORDER BY segment, offset")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]
