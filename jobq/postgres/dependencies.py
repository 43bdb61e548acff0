"""Dependencies in PostgreSQL: the ``jobq_dependencies`` table (schema version 4).

A dependent job is stored in one transaction with its parents (:func:`append`): the parents'
rows are locked ``FOR SHARE`` first, so none of them can end (move to ``jobq_done``) until the
new job's rows are committed, and an unknown parent rolls everything back. Whenever jobs end,
:func:`write` (every writer of ended states goes through it) releases or cancels their waiting
dependents in the same transaction, down the whole tree.

Two parents of one job ending at once in two transactions must not both leave it waiting: each
locks the waiting dependents' rows (``FOR UPDATE``) before reading their parents' statuses in a
later statement, so the second reads what the first committed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import psycopg

from .. import dependencies, transitions
from ..codec import SnapshotCodec
from ..errors import UnknownParent
from ..state import FINISHED, JobState, status_of
from . import groups, jobs, seeks
from .append import Appender, split
from .db import Db
from .jobs import BLOB, NOW, STATE

_PARENTS = (
    "SELECT job_id, status FROM jobq_jobs WHERE queue = %(q)s AND job_id = ANY(%(ids)s)"
    " ORDER BY job_id FOR SHARE")
_DONE_PARENTS = (
    "SELECT job_id, status FROM jobq_done WHERE queue = %(q)s AND job_id = ANY(%(ids)s)")
# A release's statements are sought id by id, in indexes that alone return their rows in the
# order asked for (jobq.postgres.seeks): plans that read those rows only, whatever the
# statistics say (one of 50 dependents read 155,700 rows of a queue of 3,000 analyzed while
# empty). The dependents of the parents that ended, by parent in the parents index:
_CHILDREN = (
    "SELECT d.child FROM unnest(%(ids)s::text[]) AS p CROSS JOIN LATERAL (SELECT x.child"
    " FROM jobq_dependencies x WHERE x.queue = %(q)s AND x.parent >= p AND x.parent <= p"
    " ORDER BY x.parent) d")
# Those still waiting, locked in id order (the ids sorted: no two releases wait on each other in
# a cycle), each sought and locked by its id (a lock that waited checks the row as committed).
_LOCK_WAITING = (
    f"SELECT {STATE}, {BLOB}, j.priority, j.seq"
    " FROM unnest(%(ids)s::text[]) AS i CROSS JOIN LATERAL (SELECT * FROM jobq_jobs x"
    " WHERE x.queue = %(q)s AND x.job_id >= i AND x.job_id <= i AND x.status = 'waiting'"
    " ORDER BY x.job_id LIMIT 1 FOR UPDATE) j")
# Their parents, in order, with each one's status (NULL: purged).
_STATUSES = (
    "SELECT d.child, d.parent, d.policy, coalesce("
    f"{seeks.seek('jobq_jobs', '%(q)s', 'd.parent', 'status')},"
    f" {seeks.seek('jobq_done', '%(q)s', 'd.parent', 'status')})"
    " FROM unnest(%(ids)s::text[]) AS c CROSS JOIN LATERAL (SELECT x.child, x.parent, x.policy"
    " FROM jobq_dependencies x WHERE x.queue = %(q)s AND x.child >= c AND x.child <= c"
    " ORDER BY x.child, x.pos) d")


def append(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
           store: Any, job: Any, parents: Sequence[str], policy: str) -> bool:
    """Inside the caller's transaction: store the verified ``job`` (JobMeta, frame) with
    ``store`` and its parents, then make it waiting, or cancel it (a parent ended badly).
    UnknownParent if a parent does not exist; False (nothing stored) if the job does."""
    meta = job[0]
    if conn.execute("SELECT 1 FROM jobq_payloads WHERE queue = %s AND job_id = %s",
                    (queue, meta.job_id)).fetchone() is not None:
        return False
    args = {"q": queue, "ids": list(parents)}
    found = dict(conn.execute(_PARENTS, args).fetchall())
    found.update(conn.execute(_DONE_PARENTS, args).fetchall())
    for parent in parents:
        if parent not in found:
            raise UnknownParent(f"cannot enqueue job {meta.job_id!r}: it depends on job"
                                f" {parent!r}, which does not exist (nothing was stored)",
                                job_id=parent)
    store(conn, queue, [job])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO jobq_dependencies (queue, child, pos, parent, policy)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        [(queue, meta.job_id, i, p, policy) for i, p in enumerate(parents)])
    decision = dependencies.decide([(p, status_of(found[p])) for p in parents], policy)
    if decision.action == "wait":
        conn.execute("UPDATE jobq_jobs SET status = 'waiting', ready = false"
                     " WHERE queue = %s AND job_id = %s", (queue, meta.job_id))
    elif decision.action == "cancel":
        now = float(conn.execute(f"SELECT {NOW}").fetchone()[0])  # type: ignore[index]
        state = jobs.load(conn, codec, queue, meta.job_id, for_update=True)[0]
        assert decision.parent is not None and decision.parent_status is not None
        write(conn, codec, queue, [transitions.parent_failed(
            state, decision.parent, decision.parent_status, now)], now)
    return True


def parents(conn: psycopg.Connection[Any], queue: str, child: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT parent FROM jobq_dependencies WHERE queue = %s AND child = %s ORDER BY pos",
        (queue, child)).fetchall()]


def waits_again(conn: psycopg.Connection[Any], queue: str, child: str) -> bool:
    """Has ``child`` a parent that has not ended (q.retry of it then waits for it again)?"""
    return conn.execute(
        "SELECT 1 FROM jobq_dependencies d JOIN jobq_jobs j ON j.queue = d.queue"
        " AND j.job_id = d.parent WHERE d.queue = %s AND d.child = %s LIMIT 1",
        (queue, child)).fetchone() is not None


class Written(NamedTuple):
    """What :func:`write` wrote: the ids of its ``new`` states (all but fenced ones whose rows
    changed), and whether jobs were released (dependents made due, a group's final job): the
    engine then wakes idle workers, which no enqueue would."""

    ids: set[str]
    released: bool


def write(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
          new: Sequence[JobState], now: float, snapshotted: Collection[str] | None = None,
          fences: Sequence[jobs.Fence | None] | None = None, *, pinned: bool = False
          ) -> Written:
    """:func:`jobq.postgres.jobs.write`, then the release of the dependents of the jobs of
    ``new`` that ended (and of theirs, in turn), in the caller's transaction. ``pinned``: the
    transaction runs jobq.postgres.seeks.PIN (a settle's): see jobq.postgres.jobs.write."""
    written, is_parent = jobs.write(conn, codec, queue, new, now, snapshotted, fences,
                                    pinned=pinned)
    ended = [s.job_id for s in new if s.status in FINISHED and s.job_id in written]
    released = False
    if ended:  # every job of ``new`` was unfinished: each of these ended now, once
        released = groups.count_ended(conn, codec, queue, ended, now)
    if not is_parent:
        return Written(written, released)  # none that ended is a parent
    while ended:
        ended, due = _release(conn, codec, queue, ended, now, pinned)
        released = released or due
    return Written(written, released)


def _release(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
             ended: list[str], now: float, pinned: bool) -> tuple[list[str], bool]:
    """Decide the waiting dependents of ``ended``; the ids of those that ended (cancelled), and
    whether any was made due. ``pinned``: as for :func:`write` (statements prepared only then)."""
    children = sorted({r[0] for r in conn.execute(_CHILDREN, {"q": queue, "ids": ended},
                                                  prepare=pinned).fetchall()})
    if not children:
        return [], False
    rows = conn.execute(_LOCK_WAITING, {"q": queue, "ids": children}, prepare=pinned).fetchall()
    if not rows:
        return [], False
    by_child: dict[str, list[tuple[str, str, str | None]]] = {}
    for child, parent, policy, status in conn.execute(
            _STATUSES, {"q": queue, "ids": [r[0] for r in rows]}, prepare=pinned).fetchall():
        by_child.setdefault(child, []).append((parent, policy, status))
    new: list[JobState] = []
    for row in rows:
        found = by_child[row[0]]
        decision = dependencies.decide(
            [(p, None if s is None else status_of(s)) for p, _, s in found], found[0][1])
        if decision.action == "wait":
            continue
        state = jobs.state_of(codec, row, row[10], writing=True)
        if decision.action == "due":
            new.append(transitions.parents_done(state, now))
        else:
            assert decision.parent is not None and decision.parent_status is not None
            new.append(transitions.parent_failed(state, decision.parent,
                                                 decision.parent_status, now))
    jobs.write(conn, codec, queue, new, now, {r[0] for r in rows if r[10] is not None},
               pinned=pinned)
    return ([s.job_id for s in new if s.status in FINISHED],
            any(s.status not in FINISHED for s in new))



class DependentJobs:
    """The engine's dependency methods (:class:`jobq.engine.Engine`), for PgEngine."""

    _db: Db
    _codec: SnapshotCodec
    _queue: str
    _key: bytes | None
    _max_body: int
    _appender: Appender

    def _jobs_ready(self) -> None: ...

    def append_dependent(self, frame: bytes, job_id: str, parents: Sequence[str],
                         policy: str) -> None:
        """One transaction: the job, its parents, its status (see the module docstring)."""
        (job,) = split([frame], self._key, self._max_body)
        with self._db.transaction("store a job (nothing was stored)") as conn:
            append(conn, self._codec, self._queue, self._appender.store, job, parents, policy)
        self._jobs_ready()

    def parents(self, job_id: str) -> list[str]:
        with self._db.errors("read a job's parents"):
            return parents(self._db.conn, self._queue, job_id)
