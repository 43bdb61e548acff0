"""Dependencies in a queue directory: the ``dependencies`` table of the state database.

A job's parents are written to the state database before its record is appended to the log
(:func:`add`, which checks under the write lock that each parent is indexed, so an unknown
parent stores nothing). The index then looks them up as it indexes the job
(:func:`settle_new`): a job whose parents have not all ended is ``waiting``, in neither
``ready`` nor ``scheduled``. Whenever jobs end, the transaction that records it releases or
cancels their waiting dependents (:func:`release`, called by
:func:`jobq.local.settle.store_transitions`), down the whole tree.

A producer that dies between the two writes leaves rows for a job that never arrives: they
name a fresh id, so nothing waits on them. Rebuilding the index from the log keeps this table
(it is in the same file): a lost state database loses the dependencies with the results.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from . import snapshots
from .. import transitions
from ..errors import UnknownParent
from .shelf import StateShelf
from ..state import FINISHED, JobState, Status, status_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS dependencies (
    child TEXT NOT NULL, pos INTEGER NOT NULL, parent TEXT NOT NULL, policy TEXT NOT NULL,
    PRIMARY KEY (child, pos)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dependencies_by_parent ON dependencies (parent);
"""

# store_transitions without the release (the release calls it for the dependents it changes)
Write = Callable[[sqlite3.Connection, StateShelf, list[tuple[JobState, Sequence[Any], Any]],
                  float, Status], None]


def add(conn: sqlite3.Connection, child: str, parents: Sequence[str], policy: str) -> bool:
    """Inside a write transaction, the index caught up: record ``child``'s parents, or
    UnknownParent (the caller rolls back) if one of them is not a job of the queue. False
    (nothing written) if ``child`` is a job already: its first record wins."""
    if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (child,)).fetchone() is not None:
        return False
    known = set()
    for part in snapshots.chunks(list(parents)):
        known.update(r[0] for r in conn.execute(
            f"SELECT job_id FROM jobs WHERE job_id IN ({snapshots.marks(len(part))})", part))
    for parent in parents:
        if parent not in known:
            raise UnknownParent(f"cannot enqueue job {child!r}: it depends on job {parent!r},"
                                " which does not exist (nothing was stored)", job_id=parent)
    conn.executemany("INSERT OR REPLACE INTO dependencies (child, pos, parent, policy)"
                     " VALUES (?, ?, ?, ?)",
                     [(child, i, parent, policy) for i, parent in enumerate(parents)])
    return True


def parents(conn: sqlite3.Connection, child: str) -> list[str]:
    """``child``'s parents in ``depends_on`` order (none: it depends on nothing)."""
    return [r[0] for r in conn.execute(
        "SELECT parent FROM dependencies WHERE child = ? ORDER BY pos", (child,))]


def waits_again(conn: sqlite3.Connection, child: str) -> bool:
    """Has ``child`` a parent that has not ended (q.retry of it then waits for it again)?"""
    return conn.execute(
        "SELECT 1 FROM dependencies d CROSS JOIN jobs j ON j.job_id = d.parent WHERE d.child = ?"
        f" AND j.status NOT IN ({', '.join(repr(s.value) for s in sorted(FINISHED))}) LIMIT 1",
        (child,)).fetchone() is not None


def any_rows(conn: sqlite3.Connection) -> bool:
    """Has any job dependencies? One seek: a queue that never used ``depends_on`` then skips
    the lookups by id that indexing and every settle would make (an ``IN`` list of a batch's
    ids, about 1 µs a job together, issue 19)."""
    return conn.execute("SELECT 1 FROM dependencies LIMIT 1").fetchone() is not None


def settle_new(conn: sqlite3.Connection, shelf: StateShelf, new: Sequence[str], now: float,
               write: Write) -> None:
    """Inside the index's write transaction: the jobs of ``new`` just indexed as queued that
    have parents become waiting, or are cancelled at once (a parent ended badly), or stay."""
    if not any_rows(conn):
        return
    having: list[str] = []
    for part in snapshots.chunks(list(new)):
        having += [r[0] for r in conn.execute(
            "SELECT DISTINCT child FROM dependencies"
            f" WHERE child IN ({snapshots.marks(len(part))})", part)]
    if having:
        release(conn, shelf, _decide(conn, shelf, having, now, write, Status.QUEUED), now, write)


def release(conn: sqlite3.Connection, shelf: StateShelf, ended: Sequence[str], now: float,
            write: Write) -> None:
    """Inside the write transaction that ended the jobs of ``ended``: decide each of their
    waiting dependents (due, cancelled, still waiting), and theirs in turn."""
    if ended and not any_rows(conn):
        return
    while ended:
        children: list[str] = []
        for part in snapshots.chunks(list(ended)):
            children += [r[0] for r in conn.execute(
                # CROSS JOIN: SQLite joins in this order, from the ended parents' index entries;
                # left to choose, it scanned every waiting job (5 ms a settle with 1,500 waiting).
                "SELECT DISTINCT d.child FROM dependencies d CROSS JOIN jobs j"
                f" ON j.job_id = d.child WHERE d.parent IN ({snapshots.marks(len(part))})"
                " AND j.status = ?",
                (*part, Status.WAITING.value))]
        ended = _decide(conn, shelf, sorted(set(children)), now, write, Status.WAITING)


def _decide(conn: sqlite3.Connection, shelf: StateShelf, children: list[str], now: float,
            write: Write, was: Status) -> list[str]:
    """Apply :func:`jobq.dependencies.decide` to ``children`` (all in status ``was``); the
    ids of those that ended (cancelled)."""
    from .. import dependencies  # queues with dependencies only: not at every worker's start

    changed: list[tuple[JobState, Sequence[Any], Any]] = []
    to_wait: list[Sequence[Any]] = []
    for child in children:
        found = conn.execute(
            "SELECT d.parent, d.policy, j.status FROM dependencies d"
            " LEFT JOIN jobs j ON j.job_id = d.parent WHERE d.child = ? ORDER BY d.pos",
            (child,)).fetchall()
        decision = dependencies.decide(
            [(p, None if s is None else status_of(s)) for p, _, s in found], found[0][1])
        if decision.action == "due" and was is not Status.WAITING \
                or decision.action == "wait" and was is Status.WAITING:
            continue  # a new job whose parents all ended well stays queued as indexed
        row = conn.execute(f"SELECT {snapshots.ROW}, priority, seq FROM jobs WHERE job_id = ?",
                           (child,)).fetchone()
        if decision.action == "wait":
            to_wait.append(row)
            continue
        with snapshots.loading():
            state = snapshots.states(conn, shelf, [row[:11]])[0]
        if decision.action == "due":
            state = transitions.parents_done(state, now)
        else:
            assert decision.parent is not None and decision.parent_status is not None
            state = transitions.parent_failed(state, decision.parent, decision.parent_status,
                                              now)
        changed.append((state, row, None))
    if to_wait:
        _unready(conn, to_wait)
        conn.executemany("UPDATE jobs SET status = ?, updated_at = ? WHERE job_id = ?",
                         [(Status.WAITING.value, now, row[0]) for row in to_wait])
    if changed:
        if was is not Status.WAITING:
            _unready(conn, [row for _, row, _ in changed])
        write(conn, shelf, changed, now, was)
    return [state.job_id for state, _, _ in changed if state.status in FINISHED]


def _unready(conn: sqlite3.Connection, rows: list[Sequence[Any]]) -> None:
    """Take newly indexed jobs (their ROW columns, priority, seq) out of ``ready`` and
    ``scheduled``, by their keys."""
    conn.executemany("DELETE FROM ready WHERE neg_priority = ? AND seq = ?",
                     [(-row[-2], row[-1]) for row in rows])
    conn.executemany("DELETE FROM scheduled WHERE run_at = ? AND seq = ?",
                     [(row[5], row[-1]) for row in rows])
