"""Deriving the index from the log: the index is a cache of the log, rebuilt from it on doubt.

Enqueue only appends to the log. Whoever reads the queue next calls :meth:`Store.catch_up`, which
runs :func:`index_batch` in a write transaction: it reads the log from the covered position, adds
each new job to ``jobs`` and to ``ready`` or ``scheduled`` (a few statements per batch, not per
job), gives it its snapshot marker (:mod:`jobq.local.snapshots`), copies damaged ranges aside, and moves the covered position forward in the same transaction. Nothing
here unpickles: the fields the index needs are read from the record's clear header
(:mod:`jobq.job_record`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable


from . import bulk, dependencies, groups, keys, settle, snapshots, totals
from .. import job_record
from ..record import SIGNATURE_MISMATCH
from ..errors import CorruptRecord, StorageError
from .log import Damage, Log, Position, Run, Sealed
from .shelf import StateShelf
from ..state import Status
from ..totals import enqueued
from .._logging import get_logger

log = get_logger(__name__)

CATCH_UP_BATCH = 2_000
_SEQ_SHIFT = 40  # seq = segment << 40 | offset: arrival order, unique per record


def seq_of(pos: Position) -> int:
    return pos.segment << _SEQ_SHIFT | pos.offset


_tuple_new = tuple.__new__
assert len(Position._fields) == 2  # as position_of gives them


def position_of(seq: int) -> Position:
    # tuple.__new__: Position's class called costs a Python call (a worker makes one a job)
    return _tuple_new(Position, (seq >> _SEQ_SHIFT, seq & ((1 << _SEQ_SHIFT) - 1)))


def covered(conn: sqlite3.Connection) -> Position:
    """The log position up to which the index is complete."""
    rows = dict(conn.execute(
        "SELECT key, value FROM meta WHERE key IN ('covered_segment', 'covered_offset')"))
    return Position(rows.get("covered_segment", 1), rows.get("covered_offset", 0))


def check_covered(conn: sqlite3.Connection, log_: Log, db_path: str) -> None:
    """Doubt the index if the log no longer reaches the position it claims to cover."""
    pos = covered(conn)
    if pos == Position(1, 0):
        return
    path = log_.path(pos.segment)
    try:
        size: int | None = os.stat(path).st_size
    except FileNotFoundError:
        size = None
    if size is None or size < pos.offset:
        found = "is missing" if size is None else f"has only {size} bytes"
        raise StorageError(
            f"the index in {db_path} covers {path} up to byte {pos.offset}, but the file {found}:"
            " the log was truncated or replaced. Restore the log, or move state.sqlite3 aside to"
            " rebuild the index from the log (finished jobs would then run again)",
            path=path, offset=pos.offset)


def index_batch(conn: sqlite3.Connection, shelf: StateShelf, log_: Log,
                now: Callable[[], float], limit: int = CATCH_UP_BATCH
                ) -> tuple[int, bool, Position | None]:
    """Index up to ``limit`` new records inside the caller's write transaction.

    Returns (jobs indexed, whether the covered position moved, an incomplete tail seen or None).
    """
    tail = None
    start = covered(conn)
    segment, offset = start
    found: dict[str, tuple[_Meta, int]] = {}  # job id -> (meta, seq): first wins
    for item in log_.scan_runs(start):
        if type(item) is Run:
            segment, buf, base, spans = item
            high = segment << _SEQ_SHIFT
            for offset, body_start, body_end, _, _ in spans:
                try:
                    meta = job_record.meta_at(buf, body_start, body_end)
                except CorruptRecord as exc:
                    quarantine(conn, log_, Damage(Position(segment, offset), base + body_end,
                                                  str(exc)), now())
                    offset = base + body_end
                    continue
                if meta[0] not in found:
                    found[meta[0]] = (meta, high | offset)
                offset = base + body_end
                if len(found) >= limit:
                    break
            else:
                continue
            break  # the limit, within the run
        elif isinstance(item, Damage):
            quarantine(conn, log_, item, now())
            segment, offset = item.pos.segment, item.end
        elif isinstance(item, Sealed):
            segment, offset = item.next
        else:
            _check_key(log_, item.reason)  # a whole record, not a torn one: see quarantine
            tail = item.pos
            break
    indexed = _insert_new(conn, shelf, found, now())
    totals.add(conn, enqueued(indexed))
    pos = Position(segment, offset)
    if pos != start:
        conn.executemany("REPLACE INTO meta (key, value) VALUES (?, ?)",
                         [("covered_segment", pos.segment), ("covered_offset", pos.offset)])
    return indexed, pos != start, tail


# A record's JobMeta fields, as job_record.meta_at reads them: job id, task, priority, run_at,
# created_at, max_attempts (a plain tuple: the index reads thousands).
_Meta = tuple[str, str, int, float, float, int]

_JOBS = ("INSERT INTO jobs (job_id, task, status, priority, seq, run_at, max_attempts, enqueued_at,"
         " updated_at, snap)", f"(?, ?, '{Status.QUEUED.value}', ?, ?, ?, ?, ?, ?, 0)")
_READY = "INSERT INTO ready (neg_priority, seq, job_id)", "(?, ?, ?)"
_SCHEDULED = "INSERT INTO scheduled (run_at, seq, job_id)", "(?, ?, ?)"


def _insert_new(conn: sqlite3.Connection, shelf: StateShelf,
                found: dict[str, tuple[_Meta, int]], at: float) -> int:
    """Add the jobs of ``found`` not indexed before (a later record of a known id is ignored)."""
    ids = list(found)
    for part in snapshots.chunks(ids):
        for (known,) in conn.execute(
                f"SELECT job_id FROM jobs WHERE job_id IN ({snapshots.marks(len(part))})", part):
            del found[known]
    jobs, ready, scheduled = [], [], []
    for job_id, ((_, task, priority, run_at, created_at, max_attempts), seq) in found.items():
        run_at = run_at_of(run_at, created_at, at)
        jobs.append((job_id, task, priority, seq, run_at, max_attempts, created_at, created_at))
        if run_at > at:
            scheduled.append((run_at, seq, job_id))
        else:
            ready.append((-priority, seq, job_id))
    bulk.insert(conn, *_JOBS, jobs)
    bulk.insert(conn, *_READY, ready)
    bulk.insert(conn, *_SCHEDULED, scheduled)
    snapshots.mark_indexed(conn, shelf, found)
    dependencies.settle_new(conn, shelf, list(found), at, settle.write_transitions)
    groups.settle_new(conn, list(found), at)
    return len(found)


def run_at_of(run_at: float, created_at: float, now: float) -> float:
    """When a new job (enqueued at ``created_at`` to run at ``run_at``) may run: its run-at
    time, but never later than its delay from ``now``.

    A clock that went back after the enqueue (or a producer whose clock ran ahead) would
    otherwise hold even an undelayed job until the clock caught up again.
    """
    return min(run_at, now + max(0.0, run_at - created_at))


def add_waiting(conn: sqlite3.Connection, job_id: str, priority: int, seq: int, run_at: float,
                now: float) -> None:
    """Put a waiting job in ``ready``, or in ``scheduled`` until its run-at time."""
    if run_at > now:
        conn.execute("INSERT INTO scheduled (run_at, seq, job_id) VALUES (?, ?, ?)",
                     (run_at, seq, job_id))
    else:
        conn.execute("INSERT INTO ready (neg_priority, seq, job_id) VALUES (?, ?, ?)",
                     (-priority, seq, job_id))


def _check_key(log_: Log, reason: str) -> None:
    """A record whose signature fails may be no damage, but signed with a key this process
    was not given (the queue's key was rotated since it started): WrongSecretKey then, before
    anything is set aside or cut (see jobq.local.keys.still_current)."""
    if SIGNATURE_MISMATCH in reason:
        keys.still_current(os.path.dirname(log_.directory), log_.key)


def quarantine(conn: sqlite3.Connection, log_: Log, damage: Damage, now: float) -> None:
    _check_key(log_, damage.reason)
    data = log_.read_range(damage.pos.segment, damage.pos.offset, damage.end)
    saved = log_.save_aside(damage.pos, data, "bad")
    conn.execute("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                 (damage.pos.segment, damage.pos.offset, damage.end, damage.reason, saved, now))
    log.warning("log.record_quarantined", segment=damage.pos.segment, offset=damage.pos.offset,
                bytes=damage.end - damage.pos.offset, reason=damage.reason, saved_to=saved)
