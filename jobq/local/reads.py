"""Reading jobs from the state database: states, index columns, counts, listings, payload positions.

Every read holds the connection for its statements only (:meth:`StateDB.reading`), and none
writes, except :func:`job_record`, which must read under the write lock. Listings read index
columns and unpickle nothing, so any process can list; long listings are read page by page.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import catch_up, compaction_redo, index, limits, snapshots
from .. import group_ids, listing, record
from ..errors import JobNotFound
from .log import Log, Position
from .shelf import StateShelf
from ..state import FINISHED, JobState, Status
from .state_db import UNFINISHED_COUNTS, StateDB

_NAMES = ("job_id, task, status, priority, attempts, progress, run_at, enqueued_at, updated_at,"
          " owner")
_COLUMNS = f"SELECT {_NAMES} FROM jobs"


def exists(db: StateDB, job_id: str) -> bool:
    with db.reading():
        return db.conn.execute("SELECT 1 FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone() is not None


def status(db: StateDB, job_id: str) -> Status:
    with db.reading():
        row = db.conn.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    return Status(row[0])


def get(db: StateDB, job_id: str) -> JobState:
    """The job's state: its row over its snapshot (see :mod:`jobq.local.snapshots`)."""
    with db.reading():
        return load(db.conn, db.shelf, job_id)


def load(conn: sqlite3.Connection, shelf: StateShelf, job_id: str) -> JobState:
    """The job's state, read on ``conn`` (in the caller's transaction, if any)."""
    row = conn.execute(f"SELECT {snapshots.ROW} FROM jobs WHERE job_id = ?",
                       (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    return snapshots.states(conn, shelf, [row])[0]


def cancel_requested(db: StateDB, job_id: str) -> bool:
    """Cheap check for a running task polling ``ctx.cancelled``."""
    with db.reading():
        row = db.conn.execute("SELECT cancel_requested FROM jobs WHERE job_id = ?",
                              (job_id,)).fetchone()
    return bool(row and row[0])


def payload_position(db: StateDB, job_id: str) -> Position:
    with db.reading():
        row = db.conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    return index.position_of(row[0])


def job_record(db: StateDB, log_: Log, job_id: str) -> record.Frame:
    """The job's record, read where the index says under the write lock.

    For a reader that found another record at the position it had: compaction moved it
    since. Under the write lock no compaction is between repointing the index and renaming
    the file, and one that died there is finished first.
    """
    with db.write() as conn:
        compaction_redo.redo_interrupted(conn, log_)
        row = conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return log_.read(index.position_of(row[0]))


def counts(db: StateDB) -> dict[str, int]:
    """Jobs per status: finished ones from the counts the store keeps, the others counted
    from the status index (as many as are waiting or running, never every job kept)."""
    result = {status.value: 0 for status in Status}
    with db.reading():
        result.update(db.conn.execute("SELECT status, n FROM job_counts"))
        result.update(db.conn.execute(UNFINISHED_COUNTS))
    return listing.shown(result)


def rows(db: StateDB, status: Status | None = None, limit: int = 100,
         newest_first: bool = True, *, after: str | None = None, task: str | None = None,
         id_contains: str | None = None, group: str | None = None,
         scan_limit: int | None = None) -> listing.Page:
    """Index columns of jobs, for listings: nothing is unpickled, so any process can list.

    ``after``: the last job of the page before; the page goes on from its place in arrival
    order (a key, not an offset: a deep page costs what the first one does). ``group``: its
    members, a range of the job_id index. ``task`` and ``id_contains`` are tests no index
    answers: they read rows until the page fills, or, with ``scan_limit``, that many rows at
    most (then the page says where to go on from: :class:`jobq.listing.Page`).
    """
    seek, args = [], []  # type: list[str], list[Any]
    if status is not None:
        seek.append("status = ?")
        args.append(status.value)
    if group is not None:
        seek.append("job_id >= ? AND job_id < ?")
        args += group_ids.members_range(group)
    tests, test_args = [], []  # type: list[str], list[Any]
    for cond, value in (("task = ?", task), ("instr(job_id, ?) > 0", id_contains)):
        if value is not None:
            tests.append(cond)
            test_args.append(value)
    order = "DESC" if newest_first else "ASC"
    with db.reading():
        if after is not None:
            # The key is the job's seq as it is now: compaction moves records within their
            # segment, in order, so a seq remembered from the last page may have moved on.
            found = db.conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (after,)).fetchone()
            if found is None:
                raise JobNotFound(f"no job with id {after!r} to page from", job_id=after)
            seek.append("seq < ?" if newest_first else "seq > ?")
            args.append(found[0])
        if scan_limit is None or not tests or group is not None:
            conds = seek + tests
            where = f"WHERE {' AND '.join(conds)}" if conds else ""
            cur = db.conn.execute(f"{_COLUMNS} {where} ORDER BY seq {order} LIMIT ?",
                                  (*args, *test_args, limit))
            return listing.Page(_dicts(cur))
        where = f"WHERE {' AND '.join(seek)}" if seek else ""
        window = f"SELECT {_NAMES}, seq FROM jobs {where} ORDER BY seq {order} LIMIT ?"
        # No ORDER BY outside: SQLite reads the window as a co-routine, in its order, and
        # stops at the page's LIMIT (an outer ORDER BY would read all of it and sort).
        cur = db.conn.execute(f"SELECT {_NAMES} FROM ({window}) WHERE {' AND '.join(tests)}"
                              " LIMIT ?", (*args, scan_limit, *test_args, limit))
        page = listing.Page(_dicts(cur))
        if len(page) < limit:  # the window ran out: did it end the jobs, or the budget?
            last = db.conn.execute(f"SELECT job_id FROM jobs {where} ORDER BY seq {order}"
                                   " LIMIT 1 OFFSET ?", (*args, scan_limit - 1)).fetchone()
            page.resume = last[0] if last else None
        return page


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur]


def rough_counts(db: StateDB, cap: int) -> dict[str, int]:
    """Jobs per status, each counted up to ``cap`` only (the finished ones are kept counted)."""
    result = {status.value: 0 for status in Status}
    with db.reading():
        result.update((s, min(n, cap)) for s, n in db.conn.execute("SELECT status, n FROM job_counts"))
        for status in set(Status) - FINISHED:
            result[status.value] = db.conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE status = ? LIMIT ?)",
                (status.value, cap)).fetchone()[0]
    return listing.shown(result)


def oldest_due(db: StateDB, now: float) -> float | None:
    """The run-at time of the longest-waiting due job, by seeks: the first ready job of each
    priority (the oldest by arrival there), and the first scheduled one if it is due."""
    found: list[float] = []
    with db.reading():
        neg = db.conn.execute("SELECT MIN(neg_priority) FROM ready").fetchone()[0]
        while neg is not None:
            first = db.conn.execute(
                "SELECT j.run_at FROM ready r JOIN jobs j ON j.job_id = r.job_id"
                " WHERE r.neg_priority = ? ORDER BY r.seq LIMIT 1", (neg,)).fetchone()
            if first is not None:
                found.append(first[0])
            neg = db.conn.execute("SELECT MIN(neg_priority) FROM ready WHERE neg_priority > ?",
                                  (neg,)).fetchone()[0]
        due = db.conn.execute("SELECT run_at FROM scheduled ORDER BY run_at LIMIT 1").fetchone()
    if due is not None and due[0] <= now:
        found.append(due[0])
    return min(found) if found else None


def finish_times(db: StateDB, status: Status, since: float, limit: int) -> list[float]:
    """When jobs of ``status`` ended, at or after ``since``: among the newest ``limit`` of the
    status by arrival (the status index), as no index orders them by that time. A job that
    waited behind more than ``limit`` others of its status is missed: a chart's bound."""
    with db.reading():
        found = db.conn.execute(
            "SELECT updated_at FROM (SELECT updated_at FROM jobs WHERE status = ?"
            " ORDER BY seq DESC LIMIT ?) WHERE updated_at >= ? ORDER BY updated_at DESC",
            (status.value, limit, since)).fetchall()
    return [t for t, in found]


def next_waiting(db: StateDB, now: float) -> dict[Status, float]:
    """The earliest run-at after ``now`` of queued and of failed jobs: the scheduled table in
    run-at order (jobs not yet due only), each row's status looked up by its job id."""
    found = {}
    with db.reading():
        for status in (Status.QUEUED, Status.FAILED):
            first = db.conn.execute(
                "SELECT s.run_at FROM scheduled s JOIN jobs j ON j.job_id = s.job_id"
                " WHERE s.run_at > ? AND j.status = ? ORDER BY s.run_at, s.seq LIMIT 1",
                (now, status.value)).fetchone()
            if first is not None:
                found[status] = first[0]
    return found


def row(db: StateDB, job_id: str) -> dict[str, Any]:
    """One job's index columns (status, progress...), without unpickling its snapshot."""
    with db.reading():
        cur = db.conn.execute(f"{_COLUMNS} WHERE job_id = ?", (job_id,))
        found = cur.fetchone()
        names = [d[0] for d in cur.description]
    if found is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    return dict(zip(names, found))


def waiting(db: StateDB, now: float) -> dict[tuple[Status, bool], float]:
    """(status, due by ``now``) -> the earliest ``run_at``, for queued and failed jobs.

    Tells a job waiting for a worker (due) from one delayed or waiting for its retry: only
    the first is a backlog, and `jobq status` must not count a retry's wait as one.
    """
    with db.reading():
        found = db.conn.execute(
            "SELECT status, run_at <= ?, MIN(run_at) FROM jobs WHERE status IN (?, ?)"
            " GROUP BY 1, 2", (now, Status.QUEUED.value, Status.FAILED.value)).fetchall()
    return {(Status(status), bool(due)): run_at for status, due, run_at in found}


def ids_starting_with(db: StateDB, prefix: str, limit: int) -> list[str]:
    """Up to ``limit`` job ids that start with ``prefix``, in order: a range of the job_id
    index (a LIKE would scan the table, and treat ``_`` and ``%`` as wildcards)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first string past every match
    with db.reading():
        found = db.conn.execute("SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ?"
                                " ORDER BY job_id LIMIT ?", (prefix, end, limit)).fetchall()
    return [job_id for job_id, in found]


def job_ids(db: StateDB, status: Status | None = None, page: int = 500) -> Iterator[str]:
    """Job ids in arrival order, read page by page (never all at once)."""
    after, last = -1, ""
    # A page starts after the last job's seq as it is now: compaction moves records within
    # their segment, in order, so a seq remembered from the last page may have moved on.
    start = "COALESCE((SELECT seq FROM jobs WHERE job_id = ?), ?)"
    while True:
        with db.reading():
            if status is None:
                found = db.conn.execute(f"SELECT seq, job_id FROM jobs WHERE seq > {start}"
                                        " ORDER BY seq LIMIT ?", (last, after, page)).fetchall()
            else:
                found = db.conn.execute("SELECT seq, job_id FROM jobs WHERE status = ?"
                                        f" AND seq > {start} ORDER BY seq LIMIT ?",
                                        (status.value, last, after, page)).fetchall()
        yield from (job_id for _, job_id in found)
        if len(found) < page:
            return
        after, last = found[-1]


def positions(db: StateDB, statuses: Iterable[Status], page: int = 500
              ) -> Iterator[tuple[Position, str, Status]]:
    """(payload position, job id, status) of the jobs in ``statuses``, in log order, read
    page by page from the status index (never all at once). A job whose status changes
    meanwhile may be listed twice, or not at all."""
    import heapq  # only listings and upkeep merge statuses: an application that enqueues needs none

    return heapq.merge(*(_positions(db, status, page) for status in statuses))


def _positions(db: StateDB, status: Status, page: int) -> Iterator[tuple[Position, str, Status]]:
    after = -1
    while True:
        with db.reading():
            found = db.conn.execute("SELECT seq, job_id FROM jobs WHERE status = ?"
                                    " AND seq > ? ORDER BY seq LIMIT ?",
                                    (status.value, after, page)).fetchall()
        yield from ((index.position_of(seq), job_id, status) for seq, job_id in found)
        if len(found) < page:
            return
        after = found[-1][0]


def has_ready(db: StateDB, log_: Log, clock: Callable[[], float] = time.time) -> bool:
    """Is a job claimable now (ready, due, or not yet indexed)? Cheap enough to poll."""
    with db.reading():
        if db.conn.execute("SELECT 1 FROM ready LIMIT 1").fetchone():
            return True
        now = clock()
        due = db.conn.execute("SELECT 1 FROM scheduled WHERE run_at <= ? LIMIT 1",
                              (now,)).fetchone()
        if due is None and limits.claimable(db.conn, now):
            return True
    return due is not None or log_.has_more(catch_up.covered(db))
