"""Reads for listings and monitors: index columns only, nothing unpickled.

Each read is one statement (autocommit), so it sees every append and settle that returned
before it. Unfinished jobs are in ``jobq_jobs``, finished ones in ``jobq_done``: a read that
wants one status looks in one table, one that wants every job looks in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import group_ids, listing
from ..state import FINISHED, Status
from .db import Db
from ..errors import JobNotFound
from .jobs import HELD_READY, LISTED, not_found

PAGE = 500

# The arrival index holds the rows of jobq_jobs but the plain ready jobs of priority 0, which
# are most new jobs (schema version 12: a new job writes one index entry fewer); those are in
# the ready index, where a priority's jobs are in arrival order. A queue's unfinished jobs in
# arrival order are the two ranges merged: each read in order, neither sorted.
ARRIVAL_INDEXED = "(NOT ready OR held OR priority <> 0)"
_READY_IN_ORDER = "ready AND NOT held AND priority = 0"


def _in_order(tables: tuple[str, ...], columns: str, where: str, args: tuple[Any, ...],
              order: str, limit: int) -> tuple[list[str], list[Any]]:
    """The parts (to join by UNION ALL) that read the first ``limit`` rows of each of
    ``tables`` matching ``where`` in arrival order (``seq`` among ``columns``), and their
    parameters (``args`` are those of ``where``)."""
    parts: list[str] = []
    for table in tables:
        ranges = (f" AND {ARRIVAL_INDEXED}", f" AND {_READY_IN_ORDER}") \
            if table == "jobq_jobs" else ("",)
        parts += (f"(SELECT {columns} FROM {table} WHERE {where}{extra}"
                  f" ORDER BY seq {order} LIMIT %s)" for extra in ranges)
    return parts, [a for _ in parts for a in (*args, limit)]


def _tables(status: Status | None) -> tuple[str, ...]:
    if status is None:
        return ("jobq_jobs", "jobq_done")
    return ("jobq_done",) if status in FINISHED else ("jobq_jobs",)


def _dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [n.strip() for n in LISTED.split(",")]
    return [dict(zip(names, row)) for row in rows]


def find(db: Db, queue: str, job_id: str, columns: str) -> tuple[Any, ...] | None:
    rows = db.execute(f"SELECT {columns} FROM jobq_jobs WHERE queue = %s AND job_id = %s"
                      f" UNION ALL SELECT {columns} FROM jobq_done WHERE queue = %s"
                      " AND job_id = %s", (queue, job_id, queue, job_id))
    return rows[0] if rows else None


def row(db: Db, queue: str, job_id: str) -> dict[str, Any]:
    found = find(db, queue, job_id, LISTED)
    if found is None:
        raise not_found(job_id)
    return _dicts([found])[0]


def rows(db: Db, queue: str, status: Status | None, limit: int, newest_first: bool, *,
         after: str | None = None, task: str | None = None, id_contains: str | None = None,
         group: str | None = None, scan_limit: int | None = None) -> listing.Page:
    """A page of jobs in arrival order, from ``after`` (the last job of the page before) on:
    by key on the seq indexes, never by offset. ``group``: a range of the id index; ``task``
    and ``id_contains`` read at most ``scan_limit`` jobs when given (see the engine's doc)."""
    order = "DESC" if newest_first else "ASC"
    seek, args = ["queue = %s"], [queue]  # type: list[str], list[Any]
    if status is not None:
        seek.append("status = %s")
        args.append(status.value)
    if group is not None:
        seek.append("job_id >= %s AND job_id < %s")
        args += group_ids.members_range(group)
    tests, test_args = [], []  # type: list[str], list[Any]
    for cond, value in (("task = %s", task), ("strpos(job_id, %s) > 0", id_contains)):
        if value is not None:
            tests.append(cond)
            test_args.append(value)
    if after is not None:
        found = find(db, queue, after, "seq")
        if found is None:
            raise JobNotFound(f"no job with id {after!r} to page from", job_id=after)
        seek.append("seq < %s" if newest_first else "seq > %s")
        args.append(found[0])
    tables = _tables(status)
    if scan_limit is None or not tests or group is not None:
        parts, params = _in_order(tables, f"{LISTED}, seq", " AND ".join(seek + tests),
                                  (*args, *test_args), order, limit)
        found_rows = db.execute(
            f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY seq {order} LIMIT %s",
            (*params, limit))
        return listing.Page(_dicts([r[:-1] for r in found_rows]))
    parts, params = _in_order(tables, f"{LISTED}, seq", " AND ".join(seek), tuple(args), order,
                              scan_limit)
    window = f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY seq {order} LIMIT %s"
    window_args = (*params, scan_limit)
    found_rows = db.execute(f"SELECT * FROM ({window}) w WHERE {' AND '.join(tests)}"
                            f" ORDER BY seq {order} LIMIT %s", (*window_args, *test_args, limit))
    page = listing.Page(_dicts([r[:-1] for r in found_rows]))
    if len(page) < limit:  # the window ran out: did it end the jobs, or the budget?
        last = db.execute(f"SELECT job_id FROM ({window}) w ORDER BY seq {order}"
                          " LIMIT 1 OFFSET %s", (*window_args, scan_limit - 1))
        page.resume = last[0][0] if last else None
    return page


# Each status is counted where an index finds it: the unfinished ones by the partial indexes
# of ready, waiting and running jobs, the finished ones by (queue, status, updated_at). No
# index finds the failed jobs among the ready ones: they are looked for among the first ready
# jobs only (by priority, then arrival: where a retry sorts, as it keeps its place), so that a
# million ready jobs are never read to find none (nor among the jobs of limited keys, held out of
# the ready index: jobq.postgres.limits). That count is rough twice over.
_ROUGH = {
    Status.QUEUED: ("jobq_jobs", ("ready AND NOT held AND status = 'queued'",
                                  f"{HELD_READY} AND status = 'queued'",
                                  "NOT ready AND status IN ('queued', 'failed') AND status = 'queued'")),
    Status.FAILED: ("jobq_jobs", ("NOT ready AND status IN ('queued', 'failed') AND status = 'failed'",)),
    Status.RUNNING: ("jobq_jobs", ("status = 'running'",)),
    Status.WAITING: ("jobq_jobs", ("status = 'waiting'",)),
}
_READY_FAILED = ("SELECT 'failed', count(*) FILTER (WHERE status = 'failed') FROM (SELECT status"
                 " FROM jobq_jobs WHERE queue = %s AND ready AND NOT held"
                 " ORDER BY priority DESC, seq LIMIT %s) s")


def rough_counts(db: Db, queue: str, cap: int) -> dict[str, int]:
    """Jobs per status, each counted up to ``cap`` only."""
    parts, args = [_READY_FAILED], [queue, cap]  # type: list[str], list[Any]
    for status in Status:
        table, preds = _ROUGH.get(status, ("jobq_done", (f"status = '{status.value}'",)))
        for pred in preds:
            parts.append(f"SELECT '{status.value}', count(*) FROM (SELECT 1 FROM {table}"
                         f" WHERE queue = %s AND {pred} LIMIT %s) s")
            args += [queue, cap]
    result = {status.value: 0 for status in Status}
    for status, n in db.execute(" UNION ALL ".join(f"({p})" for p in parts), tuple(args)):
        result[status] = min(cap, result[status] + int(n))
    return listing.shown(result)


def oldest_due(db: Db, queue: str, now: float) -> float | None:
    """The run-at time of the longest-waiting due job, by index seeks: the first ready job of
    each priority (a skip scan of the ready index) and the first due one not yet made ready;
    and the ready jobs of limited keys (held out of the ready index), read whole."""
    found = db.execute(
        "WITH RECURSIVE p(priority) AS ("
        " (SELECT priority FROM jobq_jobs WHERE queue = %(q)s AND ready AND NOT held"
        "  ORDER BY priority DESC LIMIT 1)"
        " UNION ALL SELECT (SELECT j.priority FROM jobq_jobs j WHERE j.queue = %(q)s AND j.ready"
        "  AND NOT j.held AND j.priority < p.priority ORDER BY j.priority DESC LIMIT 1)"
        " FROM p WHERE p.priority IS NOT NULL)"
        " SELECT min(r) FROM (SELECT (SELECT j.run_at FROM jobq_jobs j WHERE j.queue = %(q)s"
        "  AND j.ready AND NOT j.held AND j.priority = p.priority"
        "  ORDER BY j.priority DESC, j.seq LIMIT 1) r"
        "  FROM p WHERE p.priority IS NOT NULL"
        f" UNION ALL SELECT min(run_at) FROM jobq_jobs WHERE queue = %(q)s AND {HELD_READY}"
        " UNION ALL (SELECT run_at FROM jobq_jobs WHERE queue = %(q)s AND NOT ready"
        "  AND status IN ('queued', 'failed') AND run_at <= %(now)s ORDER BY run_at LIMIT 1)) u",
        {"q": queue, "now": now})
    return None if not found or found[0][0] is None else float(found[0][0])


def finish_times(db: Db, queue: str, status: Status, since: float, limit: int
                 ) -> list[float]:
    """When jobs of the finished ``status`` ended, at or after ``since``, newest first: a
    range of the index of finished jobs by status and time (jobq_done_updated)."""
    if status not in FINISHED:
        return []
    found = db.execute("SELECT updated_at FROM jobq_done WHERE queue = %s AND status = %s"
                       " AND updated_at >= %s ORDER BY updated_at DESC LIMIT %s",
                       (queue, status.value, since, limit))
    return [float(t) for t, in found]


def next_waiting(db: Db, queue: str, now: float) -> dict[Status, float]:
    """The earliest run-at after ``now`` of queued and of failed jobs, by seeks of the partial
    index of jobs not yet ready (jobq_jobs_waiting), in run-at order."""
    seek = ("(SELECT run_at FROM jobq_jobs WHERE queue = %(q)s AND NOT ready AND status = '{}'"
            " AND run_at > %(now)s ORDER BY run_at LIMIT 1)")
    found = db.execute(f"SELECT {seek.format('queued')}, {seek.format('failed')}",
                       {"q": queue, "now": now})
    queued, failed = found[0] if found else (None, None)
    return {s: float(t) for s, t in ((Status.QUEUED, queued), (Status.FAILED, failed))
            if t is not None}


def job_ids(db: Db, queue: str, status: Status | None, page: int = PAGE) -> Iterator[str]:
    """Ids in arrival order, page by page. A job that finishes meanwhile moves between the
    tables, and may be listed twice or not at all (as the directory engine says)."""
    where = "queue = %s AND seq > %s" + ("" if status is None else " AND status = %s")
    after = -1
    while True:
        args = (queue, after) if status is None else (queue, after, status.value)
        parts, params = _in_order(_tables(status), "seq, job_id", where, args, "ASC", page)
        found = db.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY seq LIMIT %s",
                           (*params, page))
        yield from (job_id for _, job_id in found)
        if len(found) < page:
            return
        after = found[-1][0]


def ids_starting_with(db: Db, queue: str, prefix: str, limit: int) -> list[str]:
    """A range of the (byte-ordered) id index, not a LIKE, in which ``_`` and ``%`` match."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    found = db.execute(
        "(SELECT job_id FROM jobq_jobs WHERE queue = %s AND job_id >= %s AND job_id < %s"
        " ORDER BY job_id LIMIT %s) UNION ALL (SELECT job_id FROM jobq_done WHERE queue = %s"
        " AND job_id >= %s AND job_id < %s ORDER BY job_id LIMIT %s) ORDER BY job_id LIMIT %s",
        (queue, prefix, end, limit, queue, prefix, end, limit, limit))
    return [job_id for job_id, in found]


def counts(db: Db, queue: str) -> dict[str, int]:
    result = {status.value: 0 for status in Status}
    result.update({status: int(n) for status, n in db.execute(
        "SELECT status, count(*) FROM jobq_jobs WHERE queue = %s GROUP BY status UNION ALL"
        " SELECT status, count(*) FROM jobq_done WHERE queue = %s GROUP BY status",
        (queue, queue))})
    return listing.shown(result)


def waiting(db: Db, queue: str, now: float) -> dict[tuple[Status, bool], float]:
    """(status, due by ``now``) -> the earliest run-at time, for queued and failed jobs."""
    found = db.execute(
        "SELECT status, run_at <= %s, min(run_at) FROM jobq_jobs WHERE queue = %s"
        " AND status IN ('queued', 'failed') GROUP BY 1, 2", (now, queue))
    return {(Status(status), bool(due)): float(run_at) for status, due, run_at in found}
