"""Groups (``q.map``) in a queue directory: the ``groups`` table of the state database.

A group's row is written before any of its jobs is appended (:func:`open_group`), with its
final ("then") job's id; its number of members once the last of them is appended
(:func:`close_group`). Members are known by their ids (:mod:`jobq.group_ids`): whenever jobs
end, the transaction that records it adds them to their groups' ``ended`` counter
(:func:`count_ended`, called by :func:`jobq.local.settle.store_transitions`): one statement
per group of the batch, never a scan. Only a job's move into a finished status counts (a claim
fenced off by its token records nothing, so a member run again after a crash counts once). The
transaction in which the counter reaches the number of members marks the group done and makes
its final job due; the final job, indexed before any member (it is appended first), waits
(status ``waiting``) until then (:func:`settle_new`).

``q.retry`` of a member of a group not yet done takes it off the counter (:func:`reopened`):
it counts again when it ends again. A member retried after its group is done runs, but the
group stays done and its final job does not run again.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from . import snapshots
from .. import group_ids, transitions
from ..errors import GroupNotFound
from .dependencies import Write, _unready
from .shelf import StateShelf
from ..state import Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY, chunk_size INTEGER NOT NULL, jobs INTEGER, items INTEGER,
    ended INTEGER NOT NULL DEFAULT 0, then_job TEXT, created_at REAL NOT NULL, done_at REAL
) WITHOUT ROWID;
"""

COLUMNS = ("group_id", "chunk_size", "jobs", "items", "ended", "then_job", "created_at",
           "done_at")


def any_rows(conn: sqlite3.Connection) -> bool:
    """Has any group been opened? One seek, where telling members by their ids costs a
    string test per job indexed or ended."""
    return conn.execute("SELECT 1 FROM groups LIMIT 1").fetchone() is not None


def open_group(conn: sqlite3.Connection, group_id: str, chunk_size: int, then_job: str | None,
               now: float) -> None:
    conn.execute("INSERT INTO groups (group_id, chunk_size, then_job, created_at)"
                 " VALUES (?, ?, ?, ?)", (group_id, chunk_size, then_job, now))


def close_group(conn: sqlite3.Connection, shelf: StateShelf, group_id: str, jobs: int,
                items: int, now: float, write: Write) -> None:
    """Inside a write transaction: the group has ``jobs`` members, all stored; done at once
    if that many have ended already (or there are none)."""
    row = conn.execute("UPDATE groups SET jobs = ?, items = ? WHERE group_id = ?"
                       " RETURNING ended, then_job, done_at", (jobs, items, group_id)).fetchone()
    if row is None:
        raise GroupNotFound(f"no group with id {group_id!r}", group_id=group_id)
    if row[0] >= jobs and row[2] is None:
        _done(conn, shelf, group_id, row[1], now, write)


def count_ended(conn: sqlite3.Connection, shelf: StateShelf, ended: list[str], now: float,
                write: Write) -> None:
    """Inside the write transaction that moved the jobs of ``ended`` into a finished status:
    count the members among them, and complete the groups that this makes complete."""
    if not any_rows(conn):  # no q.map ever: no member among them (no id to parse per job)
        return
    found = group_ids.groups_of(ended)
    if not found:
        return
    for group_id, n in sorted(Counter(found).items()):
        row = conn.execute("UPDATE groups SET ended = ended + ? WHERE group_id = ?"
                           " RETURNING jobs, ended, then_job, done_at", (n, group_id)).fetchone()
        if row is not None and row[0] is not None and row[1] >= row[0] and row[3] is None:
            _done(conn, shelf, group_id, row[2], now, write)


def reopened(conn: sqlite3.Connection, job_ids: list[str]) -> None:
    """Inside the write transaction that took finished jobs back (``q.retry``): they no longer
    count as ended in their groups, unless a group is done (its final job has been let go)."""
    for group_id, n in Counter(group_ids.groups_of(job_ids)).items():
        conn.execute("UPDATE groups SET ended = ended - ? WHERE group_id = ?"
                     " AND done_at IS NULL", (n, group_id))


def settle_new(conn: sqlite3.Connection, new: Sequence[str], now: float) -> None:
    """Inside the index's write transaction: a final job just indexed (queued) waits while its
    group is not done."""
    if not any_rows(conn):  # no group: no final job among them
        return
    finals = [j for j in new if group_ids.is_then(j)]
    for then_job in finals:
        done = conn.execute("SELECT done_at FROM groups WHERE group_id = ?",
                            (group_ids.group_of_then(then_job),)).fetchone()
        if done is None or done[0] is not None:
            continue  # not a final job of ours (made by hand), or its group is done already
        row = conn.execute("SELECT job_id, status, run_at, priority, seq FROM jobs"
                           " WHERE job_id = ?", (then_job,)).fetchone()
        if row is None or row[1] != Status.QUEUED.value:
            continue
        _unready(conn, [(row[0], None, None, None, None, row[2], row[3], row[4])])
        conn.execute("UPDATE jobs SET status = ?, updated_at = ? WHERE job_id = ?",
                     (Status.WAITING.value, now, then_job))


def _done(conn: sqlite3.Connection, shelf: StateShelf, group_id: str, then_job: str | None,
          now: float, write: Write) -> None:
    conn.execute("UPDATE groups SET done_at = ? WHERE group_id = ?", (now, group_id))
    if then_job is None:
        return
    row = conn.execute(f"SELECT {snapshots.ROW}, priority, seq FROM jobs WHERE job_id = ?",
                       (then_job,)).fetchone()
    if row is None or row[2] != Status.WAITING.value:
        return  # not indexed yet (it will stay queued: the group is done), or cancelled
    with snapshots.loading():
        state = snapshots.states(conn, shelf, [row[:11]])[0]
    write(conn, shelf, [(transitions.parents_done(state, now), row, None)], now, Status.WAITING)


def read(conn: sqlite3.Connection, group_id: str) -> dict[str, Any]:
    """The group's row and its members' counts by status (one range of the job-id index)."""
    row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM groups WHERE group_id = ?",
                       (group_id,)).fetchone()
    if row is None:
        raise GroupNotFound(f"no group with id {group_id!r}", group_id=group_id)
    lo, hi = group_ids.members_range(group_id)
    found = dict(zip(COLUMNS, row))
    found["counts"] = dict(conn.execute(
        "SELECT status, COUNT(*) FROM jobs WHERE job_id >= ? AND job_id < ? GROUP BY status",
        (lo, hi)).fetchall())
    return found
