"""The hot path of a worker: record ended attempts and claim the next jobs, one transaction a batch.

A worker child calls :meth:`Settler.settle` once per batch: the batch's finished jobs are written
and the next ones claimed in one write transaction, so one commit (one fsync) serves the whole
batch. Everything here runs once per batch or once per job of it, so nothing is added per job that
a batch could share: a claim is two statements whatever its size, and a finished job that this
process claimed without a snapshot gets its new state and snapshot made before the write lock is
taken (:meth:`Settler._prepare`).

Checkpoints (:meth:`Settler.save_checkpoint`) write under the same claim token. Every write checks
the token (the fencing of a lease): a claim that is no longer current records nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import dependencies, groups, index, limits, retention, snapshots, totals
from .. import transitions
from ..engine import Change, Claim
from ..errors import JobNotFound, StaleClaim
from .log import Log
from .shelf import StateShelf
from ..state import FINISHED, WAITING, JobState, Status
from .state_db import StateDB, move_counts
from ..totals import tally

PROMOTE_BATCH = 1_000
INDEX_PER_CLAIM_MIN = 200  # see Settler.settle
_STARTED = "UPDATE jobs SET prefetched = 0 WHERE job_id = ? AND token = ?"
_CHECKPOINTED_ROW = f"SELECT {snapshots.ROW}, token FROM jobs WHERE job_id = ?"
_CHECKPOINTED = "UPDATE jobs SET progress = ?, updated_at = ?, snap = 1 WHERE job_id = ?"
# An ended or changed job's row (write_transitions), then ``job_id = ?`` or ``job_id IN (...)``.
_SET = ("UPDATE jobs SET status = ?, attempts = ?, progress = ?, run_at = ?, cancel_requested = ?,"
        " owner = NULL, lease_expires = NULL, updated_at = ?, snap = ?, prefetched = 0"
        " WHERE job_id")
_RUNNING = Status.RUNNING.value  # an enum member's .value is a property: looked up once
_VALUES = {status: status.value for status in Status}  # the same, for every status (issue 19)
# A named tuple's class called costs a Python call of its __new__ (some 3,000 instructions);
# tuple.__new__(cls, values) makes the same tuple for half that: for those made once a job.
_tuple_new = tuple.__new__
assert len(Claim._fields) == 4  # as _claims gives them
# What a claim returns of the rows it takes (see Settler._claim_in). SQLite's RETURNING gives a
# REAL column's whole-number value as an integer (1000 for 1000.0), which would then be pickled
# as one: those are cast.
_CLAIMED = ("job_id, task, attempts, CAST(progress AS REAL), CAST(run_at AS REAL),"
            " cancel_requested, CAST(enqueued_at AS REAL), snap, token, max_attempts, seq")


class Prepared(NamedTuple):
    """A finished job's new state and snapshot, made before the write transaction from ``row``
    (its ``jobs`` row as claimed: the ROW columns, token and max_attempts): the snapshot as
    (its ``snap``, its bytes), decided and encoded once (jobq.local.snapshots)."""

    row: tuple[Any, ...]
    state: JobState
    stored: tuple[int, bytes]


assert len(Prepared._fields) == 3  # as _prepare gives them

# A state to write, its row as read, and its snapshot if already made (Prepared.stored) or None.
New = tuple[JobState, Sequence[Any], tuple[int, bytes] | None]


class Settler:
    """Settle, claim, checkpoint and finish on one queue's state database, for one process."""

    def __init__(self, db: StateDB, log_: Log, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._log = log_
        self._clock = clock
        # (job id, claim token, updated_at, state) of the last checkpoint this process saved.
        self._last_checkpoint: tuple[str, int, float, JobState] | None = None
        # (job id, token) -> (row as claimed (Prepared.row), the claim's state) of jobs this
        # process claimed without a snapshot: their new states can be made before the write lock
        # is taken (see _prepare).
        # Only the latest claim's (see _claims): its size is bounded by one claim's limit.
        self.fresh_claims: dict[tuple[str, int], tuple[tuple[Any, ...], JobState]] = {}

    def claim(self, owner: str, limit: int = 1, *, lease_seconds: float = 60.0) -> list[Claim]:
        """Take up to ``limit`` ready jobs, highest priority then oldest first, as ``owner``."""
        return self.settle([], owner, limit, lease_seconds=lease_seconds)[1]

    def settle(self, finished: list[tuple[str, int, Change]], owner: str, limit: int, *,
               lease_seconds: float = 60.0, prefetch: int = 0,
               started: Sequence[tuple[str, int]] = ()
               ) -> tuple[list[JobState | None], list[Claim]]:
        """Record ended attempts and claim up to ``limit`` + ``prefetch`` new jobs, in one
        transaction.

        One commit (one fsync) for a whole batch is what lets a worker drain thousands of short
        jobs a second. A finished claim that is no longer current records nothing (its entry in
        the returned list is None): another attempt owns the job now.

        The last ``prefetch`` claims are marked as not started yet: if ``owner`` dies before a
        later ``settle`` lists them in ``started`` (job id, token), they are given back without
        charging an attempt (see :func:`jobq.local.leases.running_claims`).
        """
        if started and not finished and limit + prefetch <= 0:
            # A child's watcher marking the prefetched claim that runs long: the mark must
            # outlive its worker (then its death charges the attempt), not a power cut, and
            # costs no fsync of its own.
            with self._db.write(sync=False) as conn:
                conn.executemany(_STARTED, started)
            return [], []
        now = self._clock()
        prepared = self._prepare(finished, now)
        taken: tuple[list[Any], dict[str, JobState]] = ([], {})
        tail = None
        with self._db.write() as conn:
            if limit + prefetch > 0 and self._log.has_more(index.covered(conn)):
                # A few claims' worth of the backlog, in the same transaction, not the whole
                # backlog: a worker starts on indexed jobs at once, and workers index a large
                # backlog a little at each claim while the others run jobs, instead of waiting
                # behind one another's long indexing transactions.
                _, _, tail = index.index_batch(
                    conn, self._db.shelf, self._log, self._clock,
                    limit=max(INDEX_PER_CLAIM_MIN, 2 * (limit + prefetch)))
            states = self._finish_in(conn, finished, now, prepared) if finished else []
            if started:
                conn.executemany(_STARTED, started)
            if limit + prefetch > 0:
                taken = self._claim_in(conn, owner, limit, prefetch, now + lease_seconds, now)
        if tail is not None:
            self._log.repair_tail(tail)  # a torn tail (a write in progress is left alone)
        return states, self._claims(*taken) if limit + prefetch > 0 else []

    def _claim_in(self, conn: sqlite3.Connection, owner: str, limit: int, prefetch: int,
                  lease_expires: float, now: float
                  ) -> tuple[list[Any], dict[str, JobState]]:
        """Claim in two statements per batch: the claimed rows, and the snapshots of those that
        have one (the only ones unpickled). :meth:`_claims` makes the claims of them once the
        write lock is released."""
        _promote_due(conn, now)
        if limits.active(conn):  # one lookup in an empty table while no limit is set
            taken = limits.take(conn, limit, prefetch, now)  # in order: to start, to prefetch
        else:
            taken = conn.execute(
                "DELETE FROM ready WHERE (neg_priority, seq) IN (SELECT neg_priority, seq FROM"
                " ready ORDER BY neg_priority, seq LIMIT ?) RETURNING neg_priority, seq, job_id",
                (limit + prefetch,)).fetchall()
            taken.sort()
        ids = [job_id for _, _, job_id in taken]
        rows = []
        at = float(now)  # as CAST(started_at AS REAL) and CAST(updated_at AS REAL) return it
        # The first ``limit`` start now; the rest are prefetched (one statement per kind, not
        # one per prefetched job).
        for prefetched, kind in ((0, ids[:limit]), (1, ids[limit:])):
            for part in snapshots.chunks(kind):
                # The ROW columns, token, max_attempts and seq; the status and both times are
                # the ones set here, so not returned (a column fetched costs ~1,000
                # instructions, a third of them releasing and taking the GIL; issue 19).
                rows += [(job_id, task, _RUNNING, attempts, progress, run_at, cancel, enqueued,
                          at, at, snap, token, max_attempts, seq)
                         for job_id, task, attempts, progress, run_at, cancel, enqueued, snap,
                         token, max_attempts, seq in conn.execute(
                             f"UPDATE jobs SET status = '{_RUNNING}', attempts = attempts + 1,"
                             f" token = token + 1, owner = ?, lease_expires = ?, started_at = ?,"
                             f" updated_at = ?, prefetched = ?"
                             f" WHERE job_id IN ({snapshots.marks(len(part))})"
                             f" RETURNING {_CLAIMED}",
                             (owner, lease_expires, now, now, prefetched, *part))]
        order = {job_id: i for i, job_id in enumerate(ids)}
        rows.sort(key=lambda r: order[r[0]])
        with snapshots.loading():
            with_snapshot = [r[0] for r in rows if r[10] == snapshots.SNAPSHOT]
            loaded = (snapshots.load_many(conn, self._db.shelf, with_snapshot) if with_snapshot
                      else {})
        return rows, loaded

    def _claims(self, rows: list[Any], loaded: dict[str, JobState]) -> list[Claim]:
        """Claims of rows returned by :meth:`_claim_in`.

        Remembers the rows of those without a snapshot in place of the previous claim's: a
        worker child finishes a batch in the settle that claims the next, so nothing it will
        finish is forgotten, and a claim never finished here (reaped, or abandoned by an API
        caller) is not kept for ever. A job of an earlier claim finished later only loses the
        shortcut: its new state is made in the transaction (see _prepare).
        """
        fresh: dict[tuple[str, int], tuple[tuple[Any, ...], JobState]] = {}
        claims = []
        for r in rows:  # the ROW columns, token, max_attempts, seq
            state = snapshots.overlay(r[:11], loaded.get(r[0]))
            if not r[10]:
                fresh[r[0], r[11]] = (r[:13], state)
            claims.append(_tuple_new(Claim, (r[0], r[11], state, index.position_of(r[13]))))
        self.fresh_claims = fresh
        return claims

    def _prepare(self, finished: list[tuple[str, int, Change]], now: float
                 ) -> dict[str, Prepared]:
        """Before the write lock: the new state and the pickled snapshot of each finished job
        that this process claimed when it had no snapshot (the common case, a job's first
        attempt). Its state then was its row alone, so if the row is still the same in the
        transaction (see _finish_in), the state made here is the one the transaction would make;
        and pickling it, the dearest step of recording a job, is not done under the lock."""
        prepared: dict[str, Prepared] = {}
        shelf = self._db.shelf  # once: the property asks the kernel for our pid
        for job_id, token, change in finished:
            claimed = self.fresh_claims.pop((job_id, token), None)
            if claimed is None:
                continue
            row, state = claimed
            try:
                # The claim's state, as made from the row (a transition copies, never changes it)
                state = change(state, now, row[12])
                snap = snapshots.snap_of(state, now)
                blob = shelf.encode(job_id, snapshots.kept(state, snap))
            except Exception:  # noqa: BLE001 - made again in the transaction, which raises it
                continue
            prepared[job_id] = _tuple_new(Prepared, (row, state, (snap, blob)))
        return prepared

    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState:
        """Durably record a running job's checkpoint; StaleClaim if the claim is not current."""
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute(_CHECKPOINTED_ROW, (job_id,)).fetchone()  # claim check and load
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
            _require_claim(job_id, token, row[2], row[11])
            last = self._last_checkpoint
            if last is not None and last[:3] == (job_id, token, row[8]) and row[10]:
                # The snapshot is still the one this process wrote last (every write of a
                # snapshot also sets updated_at): no need to read and unpickle it again.
                current = snapshots.overlay(row[:11], last[3])
            else:
                with snapshots.loading():
                    current = snapshots.states(conn, self._db.shelf, [row[:11]])[0]
            state = transitions.checkpointed(current, checkpoint, progress, now, token)
            self.fresh_claims.pop((job_id, token), None)  # it has a snapshot now
            snapshots.store_one(conn, self._db.shelf, state)
            conn.execute(_CHECKPOINTED, (state.progress, now, job_id))
        self._last_checkpoint = (job_id, token, now, state)
        return state

    def finish(self, job_id: str, token: int, change: Change) -> JobState:
        """Apply an end-of-attempt transition ``change(state, now, max_attempts)`` under the claim."""
        now = self._clock()
        prepared = self._prepare([(job_id, token, change)], now)
        with self._db.write() as conn:
            state = self._finish_in(conn, [(job_id, token, change)], now, prepared)[0]
        if state is None:
            with self._db.reading():
                _check_token(self._db.conn, job_id, token)  # raises JobNotFound or StaleClaim
            raise StaleClaim(f"job {job_id!r}: claim {token} is no longer current",
                             job_id=job_id, token=token)  # raced: current again meanwhile
        return state

    def _finish_in(self, conn: sqlite3.Connection, finished: list[tuple[str, int, Change]],
                   now: float, prepared: dict[str, Prepared] | None = None
                   ) -> list[JobState | None]:
        """Apply each change under its claim; None for a claim no longer current (or purged).

        A job in ``prepared`` whose row is still the one its state was made from (see _prepare)
        gets that state and snapshot as they are.
        """
        prepared = prepared or {}
        shelf = self._db.shelf
        rows: dict[str, Sequence[Any]] = {}
        for part in snapshots.chunks([job_id for job_id, _, _ in finished]):
            for row in conn.execute(
                    f"SELECT {snapshots.ROW}, token, max_attempts, priority, seq FROM jobs"
                    f" WHERE job_id IN ({snapshots.marks(len(part))}) AND status = 'running'",
                    part):
                rows[row[0]] = row
        made: dict[str, Prepared] = {}
        current = []
        for job_id, token, _ in finished:
            row = rows.get(job_id)
            if row is None or row[11] != token:
                continue
            ready = prepared.get(job_id)
            if ready is not None and ready.row == row[:13]:
                made[job_id] = ready
            else:
                current.append(row)
        with snapshots.loading():
            loaded = dict(zip([r[0] for r in current],
                              snapshots.states(conn, shelf, [r[:11] for r in current])))
        results: list[JobState | None] = []
        new: list[New] = []
        for job_id, token, change in finished:
            ready = made.pop(job_id, None)  # pop: a job listed twice is recorded once
            if ready is not None:
                results.append(ready.state)
                new.append((ready.state, rows[job_id], ready.stored))
                continue
            state = loaded.pop(job_id, None)
            if state is None or rows[job_id][11] != token:
                results.append(None)
                continue
            state = change(state, now, rows[job_id][12])
            results.append(state)
            new.append((state, rows[job_id], None))
        store_transitions(conn, shelf, new, now, Status.RUNNING)  # as the SELECT above asked
        totals.add(conn, tally((state for state, _, _ in new), now))
        return results


def store_transitions(conn: sqlite3.Connection, shelf: StateShelf, new: list[New],
                      now: float, was: Status) -> None:
    """Write ended or changed jobs: their rows, their snapshots, waiting ones' index rows,
    and the counts of finished jobs; then release (or cancel) the dependents of those that
    ended, in the same transaction (:mod:`jobq.local.dependencies`).

    ``new`` holds each new state with its row as read (``job_id`` first, ``priority`` and
    ``seq`` last) and its snapshot if already made (its ``snap`` and bytes, else None); every
    job of it was in status ``was``.
    """
    write_transitions(conn, shelf, new, now, was)
    ended = [state.job_id for state, _, _ in new if state.status in FINISHED]
    if ended:
        dependencies.release(conn, shelf, ended, now, write_transitions)
        if was not in FINISHED:  # only a move into a finished status counts in a group
            groups.count_ended(conn, shelf, ended, now, write_transitions)
    elif was in FINISHED:  # q.retry
        groups.reopened(conn, [state.job_id for state, _, _ in new])


def write_transitions(conn: sqlite3.Connection, shelf: StateShelf, new: list[New],
                      now: float, was: Status) -> None:
    """:func:`store_transitions` without the release of dependents."""
    snaps = [snapshots.snap_of(state, now) if made is None else made[0] for state, _, made in new]
    _update_rows(conn, [(_VALUES[st.status], st.attempts, st.progress, st.run_at,
                         int(st.cancel_requested), now, snap, st.job_id)
                        for (st, _, _), snap in zip(new, snaps)])
    for state, row, _ in new:
        if state.status in WAITING:
            index.add_waiting(conn, state.job_id, row[-2], row[-1], state.run_at, now)
    snapshots.store_many(conn, shelf, [(state, snap, None if made is None else made[1])
                                       for (state, _, made), snap in zip(new, snaps)])
    move_counts(conn, was, Counter(state.status for state, _, _ in new))
    retention.on_transitions(conn, (state for state, _, _ in new), now)


def _update_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Write the new row fields of jobs (_SET's values, then the job id), one statement for
    each set of jobs given the same values (a batch of jobs that succeeded at their first
    attempt: one), where executemany would reset, bind and step its statement once a job
    (issue 19). Jobs given values of their own, and every job of a batch that lists a job
    twice (to be written in order), go through executemany."""
    ids = [row[-1] for row in rows]
    if len(rows) < 2 or len(set(ids)) != len(ids):
        conn.executemany(f"{_SET} = ?", rows)
        return
    alike: dict[tuple[Any, ...], list[str]] = {}
    for row in rows:
        alike.setdefault(row[:-1], []).append(row[-1])
    alone = []
    for values, job_ids in alike.items():
        if len(job_ids) == 1:
            alone.append((*values, job_ids[0]))
            continue
        for part in snapshots.chunks(job_ids):
            conn.execute(f"{_SET} IN ({snapshots.marks(len(part))})", (*values, *part))
    if alone:
        conn.executemany(f"{_SET} = ?", alone)


def _promote_due(conn: sqlite3.Connection, now: float) -> None:
    due = conn.execute("SELECT s.run_at, s.seq, s.job_id, j.priority FROM scheduled s"
                       " JOIN jobs j ON j.job_id = s.job_id WHERE s.run_at <= ?"
                       " ORDER BY s.run_at, s.seq LIMIT ?", (now, PROMOTE_BATCH)).fetchall()
    conn.executemany("DELETE FROM scheduled WHERE run_at = ? AND seq = ?",
                     [(run_at, seq) for run_at, seq, _, _ in due])
    conn.executemany("INSERT INTO ready (neg_priority, seq, job_id) VALUES (?, ?, ?)",
                     [(-priority, seq, job_id) for _, seq, job_id, priority in due])


def _check_token(conn: sqlite3.Connection, job_id: str, token: int) -> tuple[int, int]:
    row = conn.execute("SELECT status, token, max_attempts, priority FROM jobs"
                       " WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
    status, current, max_attempts, priority = row
    _require_claim(job_id, token, status, current)
    return max_attempts, priority


def _require_claim(job_id: str, token: int, status: str, current: int) -> None:
    """StaleClaim unless the job runs under claim ``token``."""
    if status != _RUNNING or current != token:
        raise StaleClaim(f"job {job_id!r}: claim {token} is no longer current (status {status},"
                         f" claim {current})", job_id=job_id, token=token)
