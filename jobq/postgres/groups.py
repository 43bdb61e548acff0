"""Groups (``q.map``) in PostgreSQL: the ``jobq_groups`` table (see :mod:`jobq.local.groups`
for the rules, which are the same on both engines).

Members are known by their ids (:mod:`jobq.group_ids`). Whenever jobs end,
:func:`jobq.postgres.dependencies.write` (every writer of ended states goes through it, in the
transaction that records the end) adds the members among them to their groups' counters
(:func:`count_ended`): one ``UPDATE ... RETURNING`` per group of the batch, whose row lock makes
two transactions that end the last two members see each other's count, so exactly one of them
completes the group and makes its final job due. The final job is stored with the group's row,
``waiting``, in one transaction (:meth:`GroupedJobs.open_group`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from .. import group_ids, transitions
from ..codec import SnapshotCodec
from ..errors import GroupNotFound
from ..state import Status
from . import jobs
from .append import Appender, split
from .db import Db
from .jobs import NOW

BATCHES_PER_COMMIT = 20  # of q.map's batches (1,000 jobs each)
_COLUMNS = ("chunk_size", "jobs", "items", "ended", "then_job", "created_at", "done_at")
_COUNTS = (
    "SELECT status, count(*) FROM jobq_jobs WHERE queue = %(q)s AND job_id >= %(lo)s"
    " AND job_id < %(hi)s GROUP BY status UNION ALL"
    " SELECT status, count(*) FROM jobq_done WHERE queue = %(q)s AND job_id >= %(lo)s"
    " AND job_id < %(hi)s GROUP BY status")


def count_ended(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str,
                ended: list[str], now: float) -> bool:
    """Inside the transaction that moved the jobs of ``ended`` into a finished status: count
    the members among them; complete the groups that this makes complete. True if a group's
    final job was released."""
    found = group_ids.groups_of(ended)
    released = False
    if not found:
        return released
    for group_id, n in sorted(Counter(found).items()):  # in order: no deadlock between two
        row = conn.execute(
            "UPDATE jobq_groups SET ended = ended + %s WHERE queue = %s AND group_id = %s"
            " RETURNING jobs, ended, then_job, done_at", (n, queue, group_id)).fetchone()
        if row is not None and row[0] is not None and row[1] >= row[0] and row[3] is None:
            released = _done(conn, codec, queue, group_id, row[2], now) or released
    return released


def reopened(conn: psycopg.Connection[Any], queue: str, job_ids: list[str]) -> None:
    """Inside the transaction of a ``q.retry``: the retried members count no longer, unless
    their group is done."""
    for group_id, n in sorted(Counter(group_ids.groups_of(job_ids)).items()):
        conn.execute("UPDATE jobq_groups SET ended = ended - %s WHERE queue = %s"
                     " AND group_id = %s AND done_at IS NULL", (n, queue, group_id))


def _done(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, group_id: str,
          then_job: str | None, now: float) -> bool:
    """Mark the group done and release its final job; True if there was one to release."""
    conn.execute("UPDATE jobq_groups SET done_at = %s WHERE queue = %s AND group_id = %s",
                 (now, queue, group_id))
    if then_job is None:
        return False
    try:
        state, _, finished = jobs.load(conn, codec, queue, then_job, for_update=True)
    except KeyError:  # purged, or never stored
        return False
    if finished or state.status is not Status.WAITING:
        return False
    jobs.write(conn, codec, queue, [transitions.parents_done(state, now)], now)
    return True


class GroupedJobs:
    """The engine's group methods (:class:`jobq.engine.Engine`), for PgEngine."""

    _db: Db
    _codec: SnapshotCodec
    _queue: str
    _key: bytes | None
    _max_body: int
    _appender: Appender

    def _jobs_ready(self) -> None: ...

    def append_batches(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None: ...

    def open_group(self, group_id: str, chunk_size: int, then: tuple[str, bytes] | None) -> None:
        """One transaction: the group's row, and its final job, waiting."""
        job = None if then is None else split([then[1]], self._key, self._max_body)[0]
        with self._db.transaction("store a group (nothing was stored)") as conn:
            now = float(conn.execute(f"SELECT {NOW}").fetchone()[0])  # type: ignore[index]
            conn.execute("INSERT INTO jobq_groups (queue, group_id, chunk_size, then_job,"
                         " created_at) VALUES (%s, %s, %s, %s, %s)",
                         (self._queue, group_id, chunk_size, None if then is None else then[0],
                          now))
            if job is not None:
                self._appender.store(conn, self._queue, [job])
                conn.execute("UPDATE jobq_jobs SET status = 'waiting', ready = false"
                             " WHERE queue = %s AND job_id = %s", (self._queue, then[0]))

    def append_members(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """A transaction (one commit) every BATCHES_PER_COMMIT batches: one transaction for
        them all would keep every record in memory until its last COPY (append_batches
        keeps them for its retry, and the payloads' COPY is sent last)."""
        found = iter(batches)
        while True:
            part = list(itertools.islice(found, BATCHES_PER_COMMIT))
            if not part:
                return
            self.append_batches(part)

    def close_group(self, group_id: str, jobs: int, items: int) -> None:
        with self._db.transaction("complete a group") as conn:
            row = conn.execute(
                "UPDATE jobq_groups SET jobs = %s, items = %s WHERE queue = %s AND group_id = %s"
                " RETURNING ended, then_job, done_at",
                (jobs, items, self._queue, group_id)).fetchone()
            if row is None:
                raise GroupNotFound(f"no group with id {group_id!r}", group_id=group_id)
            if row[0] >= jobs and row[2] is None:
                now = float(conn.execute(f"SELECT {NOW}").fetchone()[0])  # type: ignore[index]
                _done(conn, self._codec, self._queue, group_id, row[1], now)
        self._jobs_ready()

    def group(self, group_id: str) -> dict[str, Any]:
        with self._db.errors("read a group"):
            conn = self._db.conn
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobq_groups"
                               " WHERE queue = %s AND group_id = %s",
                               (self._queue, group_id)).fetchone()
            if row is None:
                raise GroupNotFound(f"no group with id {group_id!r}", group_id=group_id)
            lo, hi = group_ids.members_range(group_id)
            counts: Counter[str] = Counter()
            for status, n in conn.execute(_COUNTS, {"q": self._queue, "lo": lo, "hi": hi}):
                counts[status] += n
        return {"group_id": group_id, **dict(zip(_COLUMNS, row)), "counts": dict(counts)}
