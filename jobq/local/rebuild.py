"""Rebuilding the index from the log and the job snapshots that survived its loss.

The index (tables ``jobs``, ``ready``, ``scheduled`` and the covered position in ``meta``) is a
cache of the log; the snapshots (table ``Dict``) are not: they hold what happened to each job. When
the index is lost or emptied while the snapshots survive, :func:`rebuild` derives it again from the
first record of each job id in the log and that job's snapshot: a finished job stays finished (a
plain success's row is made from its tuple: :mod:`jobq.local.snapshots`), a waiting one waits
again, and a running one is queued again with its checkpoint (its worker's later writes fail
their claim check). A record without a snapshot is a job never indexed, queued now,
unless it lies before a covered position that survived: that job was purged and stays gone.
"""

from __future__ import annotations

import sqlite3
import time


from . import index, snapshots, totals
from .. import job_record, transitions
from ..errors import CorruptRecord, JobqError, StorageError
from .log import Damage, Entry, Log, Position, Sealed
from .shelf import StateShelf
from ..state import WAITING, JobState, Status
from .state_db import recount
from .._logging import get_logger

log = get_logger(__name__)


def index_lost(conn: sqlite3.Connection) -> bool:
    """Do snapshots exist while the index has no jobs, or lost the rows of its waiting jobs?

    A few index seeks: cheap enough for every open. (Purge deletes a job's row and snapshot
    together, and every waiting job has a ``ready`` or ``scheduled`` row, so neither happens
    in a whole index.)
    """
    def exists(sql: str) -> bool:
        return bool(conn.execute(f"SELECT EXISTS({sql})").fetchone()[0])

    if not exists("SELECT 1 FROM Dict"):
        return False
    if not exists("SELECT 1 FROM jobs"):
        return True
    return not exists("SELECT 1 FROM ready") and not exists("SELECT 1 FROM scheduled") \
        and not exists("SELECT 1 FROM held_back") and exists("SELECT 1 FROM jobs WHERE status IN ('queued', 'failed')")


def rebuild(conn: sqlite3.Connection, shelf: StateShelf, log_: Log, now: float, *,
            reason: str) -> int:
    """Inside the caller's write transaction: refill the index from the log and the snapshots.

    Returns how many jobs the index holds afterwards. Stops at an incomplete tail, which the next
    catch-up cuts or indexes.
    """
    purged_before = index.covered(conn)  # (1, 0) when meta was lost too: nothing known purged
    for table in ("jobs", "ready", "scheduled", "held_back"):
        conn.execute(f"DELETE FROM {table}")
    # Above every claim token issued before (a count of claims), so no worker still holding one
    # can pass the claim check of a later attempt.
    token = int(time.time() * 1000)
    pos, jobs = Position(1, 0), 0
    for item in log_.scan(Position(1, 0)):
        if isinstance(item, Entry):
            pos = Position(item.pos.segment, item.pos.offset + item.frame.size)
            jobs += _restore(conn, shelf, log_, item, now, token, purged_before)
        elif isinstance(item, Damage):
            index.quarantine(conn, log_, item, now)
            pos = Position(item.pos.segment, item.end)
        elif isinstance(item, Sealed):
            pos = item.next
        else:
            break
    conn.executemany("REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [("covered_segment", pos.segment), ("covered_offset", pos.offset)])
    recount(conn)
    totals.recount(conn)
    log.warning("store.index_rebuilt", reason=reason, jobs=jobs,
                consequence="jobs that were running are queued again")
    return jobs


def _restore(conn: sqlite3.Connection, shelf: StateShelf, log_: Log, entry: Entry, now: float,
             token: int, purged_before: Position) -> bool:
    try:
        meta, _ = job_record.decode_meta(entry.frame.body)
    except CorruptRecord as exc:
        end = entry.pos.offset + entry.frame.size
        index.quarantine(conn, log_, Damage(entry.pos, end, str(exc)), now)
        return False
    if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (meta.job_id,)).fetchone():
        return False  # a later record of an existing job id: the first one wins
    snap = snapshots.SNAPSHOT
    try:
        state: JobState | None = shelf[meta.job_id]
        if state is not None and not isinstance(state, JobState):  # a plain success's tuple
            state = snapshots.from_plain(meta.job_id, meta.task, meta.created_at, state)
            snap = snapshots.PLAIN
    except KeyError:
        if entry.pos < purged_before:
            return False  # indexed once, then purged
        state = None
    except JobqError as exc:  # LoadError, a forbidden global, a newer schema, a bad signature,
        # a malformed plain success
        raise StorageError(
            f"cannot rebuild the lost index: the snapshot of job {meta.job_id!r} cannot be"
            f" loaded here ({exc}). Open the queue where the job's classes import (a worker"
            " started with --import), or move state.sqlite3 aside to rebuild from the log alone"
            " (finished jobs would run again)", job_id=meta.job_id) from exc
    if state is None:
        run_at = index.run_at_of(meta.run_at, meta.created_at, now)
        state = JobState(job_id=meta.job_id, task=meta.task, enqueued_at=meta.created_at,
                         run_at=run_at, updated_at=meta.created_at)
        shelf[meta.job_id] = state
    elif state.status is Status.RUNNING:
        state = transitions.cancelled(state, now) if state.cancel_requested \
            else transitions.released(state, now)
        shelf[meta.job_id] = state
    seq = index.seq_of(entry.pos)
    conn.execute(
        "INSERT INTO jobs (job_id, task, status, priority, seq, run_at, max_attempts, attempts,"
        " token, progress, cancel_requested, enqueued_at, updated_at, started_at, snap)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (meta.job_id, meta.task, state.status.value, meta.priority, seq, state.run_at,
         meta.max_attempts, state.attempts, token, state.progress, int(state.cancel_requested),
         meta.created_at, state.updated_at, state.started_at, snap))
    if state.status in WAITING:
        index.add_waiting(conn, meta.job_id, meta.priority, seq, state.run_at, now)
    return True
