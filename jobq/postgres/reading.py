"""Reads for listings and monitors: index columns only, nothing unpickled.

Each read is one statement (autocommit), so it sees every append and settle that returned
before it. Unfinished jobs are in ``jobq_jobs``, finished ones in ``jobq_done``: a read that
wants one status looks in one table, one that wants every job looks in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..state import FINISHED, Status
from .db import Db
from .jobs import LISTED, not_found

PAGE = 500


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


def rows(db: Db, queue: str, status: Status | None, limit: int,
         newest_first: bool) -> list[dict[str, Any]]:
    order = "DESC" if newest_first else "ASC"
    where = "queue = %s" + ("" if status is None else " AND status = %s")
    args = (queue,) if status is None else (queue, status.value)
    parts = [f"(SELECT {LISTED}, seq FROM {table} WHERE {where} ORDER BY seq {order} LIMIT %s)"
             for table in _tables(status)]
    found = db.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY seq {order}"
                       " LIMIT %s",
                       (*[a for _ in parts for a in (*args, limit)], limit))
    return _dicts([r[:-1] for r in found])


def job_ids(db: Db, queue: str, status: Status | None, page: int = PAGE) -> Iterator[str]:
    """Ids in arrival order, page by page. A job that finishes meanwhile moves between the
    tables, and may be listed twice or not at all (as the directory engine says)."""
    where = "queue = %s AND seq > %s" + ("" if status is None else " AND status = %s")
    after = -1
    while True:
        args = (queue, after) if status is None else (queue, after, status.value)
        parts = [f"(SELECT seq, job_id FROM {table} WHERE {where} ORDER BY seq LIMIT %s)"
                 for table in _tables(status)]
        found = db.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY seq LIMIT %s",
                           (*[a for _ in parts for a in (*args, page)], page))
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
    return result


def waiting(db: Db, queue: str, now: float) -> dict[tuple[Status, bool], float]:
    """(status, due by ``now``) -> the earliest run-at time, for queued and failed jobs."""
    found = db.execute(
        "SELECT status, run_at <= %s, min(run_at) FROM jobq_jobs WHERE queue = %s"
        " AND status IN ('queued', 'failed') GROUP BY 1, 2", (now, queue))
    return {(Status(status), bool(due)): float(run_at) for status, due, run_at in found}
