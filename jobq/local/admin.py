"""An operator's actions on one job: cancel it, or bring it back to the queue.

Cancelling a running job only asks it to stop: the request lives in its ``jobs`` row, and a number
in the state lock file (:meth:`Store.cancel_generation`) tells the worker children to look for it.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Callable
from typing import Any

from . import catch_up, dependencies, reads, snapshots
from .. import transitions
from ..errors import JobNotFound
from .log import Log
from ..state import JobState, Status
from .settle import store_transitions
from .state_db import StateDB

# The cancel generation, in the state lock file: Store.cancel_generation reads it, cancel moves it.
GENERATION = struct.Struct("<Q")


def cancel(db: StateDB, log_: Log, job_id: str, clock: Callable[[], float] = time.time) -> bool:
    """Cancel a waiting job now, or ask a running one to stop. False if already finished.

    A claimed job may not have started yet (a worker child prefetched it): the child learns
    of the request before starting it (see :meth:`Store.cancel_generation`) and gives it back
    unstarted, and a job given back that was asked to cancel ends cancelled.
    """
    catch_up.catch_up(db, log_, clock)
    now = clock()
    with db.write() as conn:
        row = _row(conn, job_id, "status, priority, seq, run_at")
        status, priority, seq, run_at = Status(row[0]), row[1], row[2], row[3]
        if status is Status.RUNNING:  # the flag lives in the row: no snapshot to rewrite
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))
        elif status.finished:
            return False
        else:
            state = _load_for_update(conn, db, job_id)
            conn.execute("DELETE FROM ready WHERE neg_priority = ? AND seq = ?",
                         (-priority, seq))
            conn.execute("DELETE FROM scheduled WHERE run_at = ? AND seq = ?", (run_at, seq))
            store_transitions(conn, db.shelf,
                              [(transitions.cancelled(state, now), (priority, seq), None)], now,
                              status)
    if status is Status.RUNNING:
        _announce_cancel(db)
    return True


def _row(conn: sqlite3.Connection, job_id: str, columns: str) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {columns} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    return row


def _load_for_update(conn: sqlite3.Connection, db: StateDB, job_id: str) -> JobState:
    with snapshots.loading():
        return reads.load(conn, db.shelf, job_id)


def _announce_cancel(db: StateDB) -> None:
    # After the commit, never before it: a child that sees the new number and then reads
    # the cancelled claims must find this one among them. Under the lock, so that two
    # announcements never write the same number. (A canceller that dies between the two
    # leaves the request as one for a running job: the job runs, then ends cancelled.)
    lock = db.lock
    with lock:
        lock.set_shared(GENERATION.pack((GENERATION.unpack(lock.shared(8))[0] + 1) % 2**64))


def requeue(db: StateDB, log_: Log, job_id: str, clock: Callable[[], float] = time.time) -> bool:
    """Bring a dead or cancelled job back to the queue (waiting, if some of its parents have
    not ended). False for any other status."""
    catch_up.catch_up(db, log_, clock)
    now = clock()
    with db.write() as conn:
        row = _row(conn, job_id, "priority, seq")
        state = _load_for_update(conn, db, job_id)
        if not transitions.can_requeue(state):
            return False
        new = transitions.requeued(state, now)
        if dependencies.waits_again(conn, job_id):
            new = transitions.waiting(new, now)
        store_transitions(conn, db.shelf, [(new, row, None)], now, state.status)
    return True
