"""The state store: job snapshots (``shelve``) and the index that finds the next job to run.

Both live in one SQLite file in WAL mode, so a snapshot and the index rows that go with it commit
in one transaction. Tables::

    Dict        shelve's mapping (jobq.local.sqlite_dbm): job id -> pickled JobState (or a marker)
    jobs        one row per job: status, priority, arrival order (seq), run_at, attempts, the claim
                token, and where its payload lies in the log; its scalars win over the snapshot's
                (see jobq.local.snapshots: a claim writes only this row)
    ready       (-priority, seq) of jobs that may run now: the next job is its first row
    scheduled   (run_at, seq) of jobs waiting for a time; moved to ready when due
    quarantine  damaged log ranges that were copied aside and skipped
    job_counts  finished jobs per status, moved with every change of status (jobq.local.state_db)
    meta        the log position the index covers

The log is the truth and the index a cache of it: enqueue never touches this file; the index
catches up from the covered position when it is next read (:meth:`Store.catch_up`, with the work
in :mod:`jobq.local.index`). Finding the next job is an index seek, whatever the number of queued or
delayed jobs.

Write transactions, and how they are made durable (group commit), are :mod:`jobq.local.state_db`'s.
"""

from __future__ import annotations

import heapq
from collections import Counter
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple


from . import compaction_redo, index, rebuild, snapshots, wal
from .. import record, transitions
from .directory import QueueDir
from ..engine import Change, Claim
from ..errors import CorruptRecord, JobNotFound, LoadError, StaleClaim, StorageError
from .log import Log, Position
from ..pickling import PickleRules
from .shelf import StateShelf
from ..state import WAITING, JobState, Status
from .state_db import UNFINISHED_COUNTS, StateDB, move_counts
from .._logging import get_logger

log = get_logger(__name__)

PROMOTE_BATCH = 1_000
_U64 = struct.Struct("<Q")  # the cancel generation (see Store.cancel_generation)
INDEX_PER_CLAIM_MIN = 200  # see Store.settle

# Claims of a worker's children are owned by "<worker id>/<n>": this matches a worker's own claims
# and its children's with one index range.
_OWNED = "(owner = ? OR (owner >= ? AND owner < ?))"


def _owned(owner: str) -> tuple[str, str, str]:
    return owner, owner + "/", owner + "0"  # "0" is the character after "/"


class Prepared(NamedTuple):
    """A finished job's new state and snapshot, made before the write transaction from ``row``
    (its ``jobs`` row as claimed: the ROW columns, token and max_attempts)."""

    row: tuple[Any, ...]
    state: JobState
    blob: bytes


class Store:
    """Job snapshots and the ready index of one queue directory."""

    def __init__(self, qdir: QueueDir, log_: Log, *, rules: PickleRules, secret_key: bytes | None,
                 old_keys: tuple[bytes, ...] = (), clock: Callable[[], float] = time.time) -> None:
        self._qdir = qdir
        self._log = log_
        self._clock = clock
        self._wal_size: int | None = None  # see presize_wal
        # (job id, claim token, updated_at, state) of the last checkpoint this process saved.
        self._last_checkpoint: tuple[str, int, float, JobState] | None = None
        # (job id, token) -> row as claimed (Prepared.row) of jobs this process claimed without a
        # snapshot: their new states can be made before the write lock is taken (see _prepare).
        # Only the latest claim's (see _claims): its size is bounded by one claim's limit.
        self._fresh_claims: dict[tuple[str, int], tuple[Any, ...]] = {}
        self._db = StateDB(qdir, log_, rules=rules, secret_key=secret_key, old_keys=old_keys)

    @property
    def conn(self) -> sqlite3.Connection:
        return self._db.conn

    @property
    def shelf(self) -> StateShelf:
        return self._db.shelf

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the store's connection, for maintenance (purge, compact)."""
        return self._db.write(always_sync=True)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store's connection (``conn``) for reads, for maintenance."""
        return self._db.reading()

    @property
    def db_path(self) -> str:
        return self._qdir.state_db

    def close(self) -> None:
        self._db.close()

    # -- catching up with the log --------------------------------------------------------------

    def covered(self) -> Position:
        """The log position up to which the index is complete."""
        with self._db.reading():
            return index.covered(self.conn)

    def check_covered(self) -> None:
        """Raise StorageError if the log no longer reaches the position the index covers."""
        with self._db.reading():
            index.check_covered(self.conn, self._log, self._qdir.state_db)

    def ensure_index(self) -> bool:
        """On open: rebuild the index if it was lost while job snapshots survive; True if rebuilt.

        Costs a few index seeks when the index is whole.
        """
        with self._db.reading():
            if not rebuild.index_lost(self.conn):
                return False
        with self._db.write() as conn:
            if not rebuild.index_lost(conn):
                return False  # another process rebuilt it meanwhile
            rebuild.rebuild(conn, self.shelf, self._log, self._clock(),
                            reason="index tables missing or empty")
        return True

    def rebuild_index(self) -> int:
        """Rebuild the index from the log and the surviving snapshots; return how many jobs.

        For an index that lost rows in a way :meth:`ensure_index` cannot see. Jobs running now
        are queued again, and the results of their current attempts will not count.
        """
        with self._db.write() as conn:
            return rebuild.rebuild(conn, self.shelf, self._log, self._clock(), reason="requested")

    def catch_up(self, batches: int | None = None) -> int:
        """Index the records appended since the covered position (all of them, or ``batches``
        transactions' worth); return how many jobs.

        Damaged ranges are copied aside and skipped; a torn tail is cut (see Log.repair_tail).
        """
        total = 0
        while self._log.has_more(self.covered()) and batches != 0:
            batches = None if batches is None else batches - 1
            with self._db.write() as conn:
                indexed, moved, tail = index.index_batch(conn, self.shelf, self._log, self._clock)
            total += indexed
            repaired = tail is not None and self._log.repair_tail(tail)
            if not (moved or repaired) and (tail is None or not self._log.has_more(tail)):
                break  # nothing to index now; an incomplete tail was completed meanwhile or is gone
        return total

    def quarantined(self) -> list[dict[str, Any]]:
        with self._db.reading():
            cur = self.conn.execute("SELECT segment, offset, end_offset, reason, saved_to, found_at"
                                    " FROM quarantine ORDER BY segment, offset")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur]

    # -- reading -------------------------------------------------------------------------------

    def exists(self, job_id: str) -> bool:
        with self._db.reading():
            return self.conn.execute("SELECT 1 FROM jobs WHERE job_id = ?",
                                     (job_id,)).fetchone() is not None

    def status(self, job_id: str) -> Status:
        with self._db.reading():
            row = self.conn.execute("SELECT status FROM jobs WHERE job_id = ?",
                                    (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return Status(row[0])

    def get(self, job_id: str) -> JobState:
        """The job's state: its row over its snapshot (see :mod:`jobq.local.snapshots`)."""
        with self._db.reading():
            return self._load(self.conn, job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Cheap check for a running task polling ``ctx.cancelled``."""
        with self._db.reading():
            row = self.conn.execute("SELECT cancel_requested FROM jobs WHERE job_id = ?",
                                    (job_id,)).fetchone()
        return bool(row and row[0])

    def payload_position(self, job_id: str) -> Position:
        with self._db.reading():
            row = self.conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return index.position_of(row[0])

    def job_record(self, job_id: str) -> record.Frame:
        """The job's record, read where the index says under the write lock.

        For a reader that found another record at the position it had: compaction moved it
        since. Under the write lock no compaction is between repointing the index and renaming
        the file, and one that died there is finished first.
        """
        with self._db.write() as conn:
            compaction_redo.redo_interrupted(conn, self._log)
            row = conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
            return self._log.read(index.position_of(row[0]))

    def counts(self) -> dict[str, int]:
        """Jobs per status: finished ones from the counts the store keeps, the others counted
        from the status index (as many as are waiting or running, never every job kept)."""
        counts = {status.value: 0 for status in Status}
        with self._db.reading():
            counts.update(self.conn.execute("SELECT status, n FROM job_counts"))
            counts.update(self.conn.execute(UNFINISHED_COUNTS))
        return counts

    def rows(self, status: Status | None = None, limit: int = 100,
             newest_first: bool = True) -> list[dict[str, Any]]:
        """Index columns of jobs, for listings: nothing is unpickled, so any process can list."""
        where, args = ("WHERE status = ?", [status.value]) if status else ("", [])
        order = "DESC" if newest_first else "ASC"
        with self._db.reading():
            cur = self.conn.execute(
                "SELECT job_id, task, status, priority, attempts, progress, run_at, enqueued_at,"
                f" updated_at, owner FROM jobs {where} ORDER BY seq {order} LIMIT ?",
                (*args, limit))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur]

    def row(self, job_id: str) -> dict[str, Any]:
        """One job's index columns (status, progress...), without unpickling its snapshot."""
        with self._db.reading():
            cur = self.conn.execute(
                "SELECT job_id, task, status, priority, attempts, progress, run_at, enqueued_at,"
                " updated_at, owner FROM jobs WHERE job_id = ?", (job_id,))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return dict(zip(names, row))

    def waiting(self, now: float) -> dict[tuple[Status, bool], float]:
        """(status, due by ``now``) -> the earliest ``run_at``, for queued and failed jobs.

        Tells a job waiting for a worker (due) from one delayed or waiting for its retry: only
        the first is a backlog, and `jobq status` must not count a retry's wait as one.
        """
        with self._db.reading():
            rows = self.conn.execute(
                "SELECT status, run_at <= ?, MIN(run_at) FROM jobs WHERE status IN (?, ?)"
                " GROUP BY 1, 2", (now, Status.QUEUED.value, Status.FAILED.value)).fetchall()
        return {(Status(status), bool(due)): run_at for status, due, run_at in rows}

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` job ids that start with ``prefix``, in order: a range of the job_id
        index (a LIKE would scan the table, and treat ``_`` and ``%`` as wildcards)."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first string past every match
        with self._db.reading():
            rows = self.conn.execute("SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ?"
                                     " ORDER BY job_id LIMIT ?", (prefix, end, limit)).fetchall()
        return [job_id for job_id, in rows]

    def job_ids(self, status: Status | None = None, page: int = 500) -> Iterator[str]:
        """Job ids in arrival order, read page by page (never all at once)."""
        after, last = -1, ""
        # A page starts after the last job's seq as it is now: compaction moves records within
        # their segment, in order, so a seq remembered from the last page may have moved on.
        start = "COALESCE((SELECT seq FROM jobs WHERE job_id = ?), ?)"
        while True:
            with self._db.reading():
                if status is None:
                    rows = self.conn.execute(f"SELECT seq, job_id FROM jobs WHERE seq > {start}"
                                             " ORDER BY seq LIMIT ?",
                                             (last, after, page)).fetchall()
                else:
                    rows = self.conn.execute("SELECT seq, job_id FROM jobs WHERE status = ?"
                                             f" AND seq > {start} ORDER BY seq LIMIT ?",
                                             (status.value, last, after, page)).fetchall()
            yield from (job_id for _, job_id in rows)
            if len(rows) < page:
                return
            after, last = rows[-1]

    def positions(self, statuses: Iterable[Status], page: int = 500
                  ) -> Iterator[tuple[Position, str, Status]]:
        """(payload position, job id, status) of the jobs in ``statuses``, in log order, read
        page by page from the status index (never all at once). A job whose status changes
        meanwhile may be listed twice, or not at all."""
        return heapq.merge(*(self._positions(status, page) for status in statuses))

    def _positions(self, status: Status, page: int) -> Iterator[tuple[Position, str, Status]]:
        after = -1
        while True:
            with self._db.reading():
                rows = self.conn.execute("SELECT seq, job_id FROM jobs WHERE status = ?"
                                         " AND seq > ? ORDER BY seq LIMIT ?",
                                         (status.value, after, page)).fetchall()
            yield from ((index.position_of(seq), job_id, status) for seq, job_id in rows)
            if len(rows) < page:
                return
            after = rows[-1][0]

    # -- claiming and finishing ----------------------------------------------------------------

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
        charging an attempt (see :meth:`running`).
        """
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
                    conn, self.shelf, self._log, self._clock,
                    limit=max(INDEX_PER_CLAIM_MIN, 2 * (limit + prefetch)))
            states = self._finish_in(conn, finished, now, prepared) if finished else []
            if started:
                conn.executemany("UPDATE jobs SET prefetched = 0 WHERE job_id = ? AND token = ?",
                                 started)
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
        self._promote_due(conn, now)
        taken = conn.execute(
            "DELETE FROM ready WHERE (neg_priority, seq) IN (SELECT neg_priority, seq FROM ready"
            " ORDER BY neg_priority, seq LIMIT ?) RETURNING neg_priority, seq, job_id",
            (limit + prefetch,)).fetchall()
        taken.sort()
        ids = [job_id for _, _, job_id in taken]
        rows = []
        # The first ``limit`` start now; the rest are prefetched (one statement per kind, not
        # one per prefetched job).
        for prefetched, kind in ((0, ids[:limit]), (1, ids[limit:])):
            for part in snapshots.chunks(kind):
                rows += conn.execute(
                    f"UPDATE jobs SET status = 'running', attempts = attempts + 1,"
                    f" token = token + 1, owner = ?, lease_expires = ?, started_at = ?,"
                    f" updated_at = ?, prefetched = ?"
                    f" WHERE job_id IN ({snapshots.marks(len(part))})"
                    f" RETURNING {snapshots.ROW_RETURNED}, token, max_attempts, seq",
                    (owner, lease_expires, now, now, prefetched, *part)).fetchall()
        order = {job_id: i for i, job_id in enumerate(ids)}
        rows.sort(key=lambda r: order[r[0]])
        with self._loading():
            with_snapshot = [r[0] for r in rows if r[10]]
            loaded = snapshots.load_many(conn, self.shelf, with_snapshot) if with_snapshot else {}
        return rows, loaded

    def _claims(self, rows: list[Any], loaded: dict[str, JobState]) -> list[Claim]:
        """Claims of rows returned by :meth:`_claim_in`.

        Remembers the rows of those without a snapshot in place of the previous claim's: a
        worker child finishes a batch in the settle that claims the next, so nothing it will
        finish is forgotten, and a claim never finished here (reaped, or abandoned by an API
        caller) is not kept for ever. A job of an earlier claim finished later only loses the
        shortcut: its new state is made in the transaction (see _prepare).
        """
        fresh: dict[tuple[str, int], tuple[Any, ...]] = {}
        claims = []
        for r in rows:  # the ROW columns, token, max_attempts, seq
            if not r[10]:
                fresh[r[0], r[11]] = r[:13]
            claims.append(Claim(r[0], r[11], snapshots.overlay(r[:11], loaded.get(r[0])),
                                index.position_of(r[13])))
        self._fresh_claims = fresh
        return claims

    def _prepare(self, finished: list[tuple[str, int, Change]], now: float
                 ) -> dict[str, Prepared]:
        """Before the write lock: the new state and the pickled snapshot of each finished job
        that this process claimed when it had no snapshot (the common case, a job's first
        attempt). Its state then was its row alone, so if the row is still the same in the
        transaction (see _finish_in), the state made here is the one the transaction would make;
        and pickling it, the dearest step of recording a job, is not done under the lock."""
        prepared: dict[str, Prepared] = {}
        for job_id, token, change in finished:
            row = self._fresh_claims.pop((job_id, token), None)
            if row is None:
                continue
            try:
                state = change(snapshots.overlay(row[:11], None), now, row[12])
                blob = self.shelf.encode(job_id, state)
            except Exception:  # noqa: BLE001 - made again in the transaction, which raises it
                continue
            prepared[job_id] = Prepared(row, state, blob)
        return prepared

    def _promote_due(self, conn: sqlite3.Connection, now: float) -> None:
        due = conn.execute("SELECT s.run_at, s.seq, s.job_id, j.priority FROM scheduled s"
                           " JOIN jobs j ON j.job_id = s.job_id WHERE s.run_at <= ?"
                           " ORDER BY s.run_at, s.seq LIMIT ?", (now, PROMOTE_BATCH)).fetchall()
        conn.executemany("DELETE FROM scheduled WHERE run_at = ? AND seq = ?",
                         [(run_at, seq) for run_at, seq, _, _ in due])
        conn.executemany("INSERT INTO ready (neg_priority, seq, job_id) VALUES (?, ?, ?)",
                         [(-priority, seq, job_id) for _, seq, job_id, priority in due])

    @contextmanager
    def _loading(self) -> Iterator[None]:
        """A snapshot a write needs but cannot load is a StorageError naming the job."""
        try:
            yield
        except (LoadError, CorruptRecord) as exc:
            job_id = getattr(exc, "job_id", None)
            raise StorageError(f"state snapshot of job {job_id!r} cannot be loaded: {exc}",
                               job_id=job_id) from exc

    def _load(self, conn: sqlite3.Connection, job_id: str) -> JobState:
        row = conn.execute(f"SELECT {snapshots.ROW} FROM jobs WHERE job_id = ?",
                           (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return snapshots.states(conn, self.shelf, [row])[0]

    def _load_for_update(self, conn: sqlite3.Connection, job_id: str) -> JobState:
        with self._loading():
            return self._load(conn, job_id)

    def _check_token(self, conn: sqlite3.Connection, job_id: str, token: int) -> tuple[int, int]:
        row = conn.execute("SELECT status, token, max_attempts, priority FROM jobs"
                           " WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        status, current, max_attempts, priority = row
        _require_claim(job_id, token, status, current)
        return max_attempts, priority

    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState:
        """Durably record a running job's checkpoint; StaleClaim if the claim is not current."""
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute(f"SELECT {snapshots.ROW}, token FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()  # the claim check and the load in one query
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
            _require_claim(job_id, token, row[2], row[11])
            last = self._last_checkpoint
            if last is not None and last[:3] == (job_id, token, row[8]) and row[10]:
                # The snapshot is still the one this process wrote last (every write of a
                # snapshot also sets updated_at): no need to read and unpickle it again.
                current = snapshots.overlay(row[:11], last[3])
            else:
                with self._loading():
                    current = snapshots.states(conn, self.shelf, [row[:11]])[0]
            state = transitions.checkpointed(current, checkpoint, progress, now, token)
            self._fresh_claims.pop((job_id, token), None)  # it has a snapshot now
            snapshots.store_one(conn, self.shelf, state)
            conn.execute("UPDATE jobs SET progress = ?, updated_at = ?, snap = 1 WHERE job_id = ?",
                         (state.progress, now, job_id))
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
                self._check_token(self.conn, job_id, token)  # raises JobNotFound or StaleClaim
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
        with self._loading():
            loaded = dict(zip([r[0] for r in current],
                              snapshots.states(conn, self.shelf, [r[:11] for r in current])))
        results: list[JobState | None] = []
        new: list[tuple[JobState, Sequence[Any], bytes | None]] = []
        for job_id, token, change in finished:
            ready = made.pop(job_id, None)  # pop: a job listed twice is recorded once
            if ready is not None:
                results.append(ready.state)
                new.append((ready.state, rows[job_id], ready.blob))
                continue
            state = loaded.pop(job_id, None)
            if state is None or rows[job_id][11] != token:
                results.append(None)
                continue
            state = change(state, now, rows[job_id][12])
            results.append(state)
            new.append((state, rows[job_id], None))
        self._store_transitions(conn, new, now, Status.RUNNING)  # as the SELECT above asked
        return results

        # -- leases and liveness (for the worker runtime) ------------------------------------------

    def renew(self, owner: str, lease_seconds: float) -> int:
        """Extend the lease of every job ``owner`` (or its children) runs; return how many."""
        now = self._clock()
        with self._db.write() as conn:
            return conn.execute(f"UPDATE jobs SET lease_expires = ? WHERE status = ? AND {_OWNED}",
                                (now + lease_seconds, Status.RUNNING.value, *_owned(owner))
                                ).rowcount

    def running(self, owner: str | None = None) -> list[tuple[str, int, str, float]]:
        """(job id, claim token, owner, lease expiry) of running jobs, of one owner or all."""
        with self._db.reading():
            sql = "SELECT job_id, token, owner, lease_expires FROM jobs WHERE status = ?"
            args: tuple[Any, ...] = (Status.RUNNING.value,)
            if owner is not None:
                sql, args = sql + " AND owner = ?", (*args, owner)
            return self.conn.execute(sql, args).fetchall()

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (SQLite's passive checkpoint: it never waits for
        writers), so that workers committing batches do not have to stop for it themselves."""
        with self._db.reading():
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def presize_wal(self) -> int:
        """Give the WAL its working size now (see :mod:`jobq.local.wal`); return the bytes added.

        A worker's supervisor calls it while its children run jobs: every commit after it
        (a checkpoint, a batch of claims and completions) overwrites instead of appending. It only
        saves time, so a failure (a full disk) is logged and leaves everything as it was.
        """
        db_path = self._qdir.state_db
        if self._wal_size is None:
            with self._db.reading():
                self._wal_size = wal.working_size(self.conn)
        if not wal.needs_presize(db_path, self._wal_size):
            return 0
        try:
            with self._db.write():
                added = wal.presize(db_path, self._wal_size)
        except (OSError, StorageError) as exc:
            log.warning("store.wal_presize_failed", path=wal.path_of(db_path), error=str(exc))
            return 0
        if added:
            log.debug("store.wal_presized", bytes=added, size=self._wal_size)
        return added

    def running_claims(self) -> list[tuple[str, int, str, float, bool]]:
        """(job id, claim token, owner, lease expiry, started) of every running job.

        ``started`` is False for a prefetched claim its owner has not reported started: if the
        owner died, that job never ran and is given back without charging an attempt.
        """
        with self._db.reading():
            return [(*row[:4], not row[4]) for row in self.conn.execute(
                "SELECT job_id, token, owner, lease_expires, prefetched FROM jobs"
                " WHERE status = 'running'")]

    def cancelling(self, owner: str) -> set[tuple[str, int]]:
        """(job id, claim token) of the jobs ``owner`` (or its children) holds that were asked to
        cancel: with the token, so that a later claim of the same job is not taken for this one."""
        with self._db.reading():
            return set(self.conn.execute(
                f"SELECT job_id, token FROM jobs WHERE status = ? AND {_OWNED}"
                " AND cancel_requested = 1", (Status.RUNNING.value, *_owned(owner))))

    def has_ready(self) -> bool:
        """Is a job claimable now (ready, due, or not yet indexed)? Cheap enough to poll."""
        with self._db.reading():
            if self.conn.execute("SELECT 1 FROM ready LIMIT 1").fetchone():
                return True
            due = self.conn.execute("SELECT 1 FROM scheduled WHERE run_at <= ? LIMIT 1",
                                    (self._clock(),)).fetchone()
        return due is not None or self._log.has_more(self.covered())

    def _store_transitions(self, conn: sqlite3.Connection,
                           new: list[tuple[JobState, Sequence[Any], bytes | None]],
                           now: float, was: Status) -> None:
        """Write ended or changed jobs: their rows, their snapshots, waiting ones' index rows,
        and the counts of finished jobs.

        ``new`` holds each new state with its row as read (``job_id`` first, ``priority`` and
        ``seq`` last) and its snapshot if already pickled (else None); every job of it was in
        status ``was``.
        """
        conn.executemany(
            "UPDATE jobs SET status = ?, attempts = ?, progress = ?, run_at = ?,"
            " cancel_requested = ?, owner = NULL, lease_expires = NULL, updated_at = ?, snap = 1,"
            " prefetched = 0 WHERE job_id = ?",
            [(st.status.value, st.attempts, st.progress, st.run_at, int(st.cancel_requested),
              now, st.job_id) for st, _, _ in new])
        for state, row, _ in new:
            if state.status in WAITING:
                index.add_waiting(conn, state.job_id, row[-2], row[-1], state.run_at, now)
        snapshots.store_many(conn, self.shelf, [(state, blob) for state, _, blob in new])
        move_counts(conn, was, Counter(state.status for state, _, _ in new))

    # -- operator actions ----------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job now, or ask a running one to stop. False if already finished.

        A claimed job may not have started yet (a worker child prefetched it): the child learns
        of the request before starting it (see :meth:`cancel_generation`) and gives it back
        unstarted, and a job given back that was asked to cancel ends cancelled.
        """
        self.catch_up()
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute("SELECT status, priority, seq, run_at FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
            status, priority, seq, run_at = Status(row[0]), row[1], row[2], row[3]
            if status is Status.RUNNING:  # the flag lives in the row: no snapshot to rewrite
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))
            elif status.finished:
                return False
            else:
                state = self._load_for_update(conn, job_id)
                conn.execute("DELETE FROM ready WHERE neg_priority = ? AND seq = ?",
                             (-priority, seq))
                conn.execute("DELETE FROM scheduled WHERE run_at = ? AND seq = ?", (run_at, seq))
                self._store_transitions(
                    conn, [(transitions.cancelled(state, now), (priority, seq), None)], now,
                    status)
        if status is Status.RUNNING:
            self._announce_cancel()
        return True

    def cancel_generation(self) -> int:
        """A number that changes each time a claimed job is asked to cancel.

        Cheap to poll (a read of shared memory: no system call, no SQLite): a worker child reads
        it before each job it prefetched and reads the cancelled claims (:meth:`cancelling`) only
        when it changed. It lives in the state lock file, so every process on the queue sees it;
        it is not durable, and needs not be: only processes alive together compare it. Read
        without the lock: a reader only compares it with the last value it saw, so a value read
        mid-write costs one extra read of the cancelled claims, never a missed one.
        """
        return _U64.unpack_from(self._db.shared_view(8))[0]

    def _announce_cancel(self) -> None:
        # After the commit, never before it: a child that sees the new number and then reads
        # the cancelled claims must find this one among them. Under the lock, so that two
        # announcements never write the same number. (A canceller that dies between the two
        # leaves the request as one for a running job: the job runs, then ends cancelled.)
        lock = self._db.lock
        with lock:
            lock.set_shared(_U64.pack((_U64.unpack(lock.shared(8))[0] + 1) % 2**64))

    def requeue(self, job_id: str) -> bool:
        """Bring a dead or cancelled job back to the queue. False for any other status."""
        self.catch_up()
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute("SELECT priority, seq FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
            state = self._load_for_update(conn, job_id)
            if not transitions.can_requeue(state):
                return False
            self._store_transitions(conn, [(transitions.requeued(state, now), row, None)], now,
                                    state.status)
        return True


def _require_claim(job_id: str, token: int, status: str, current: int) -> None:
    """StaleClaim unless the job runs under claim ``token``."""
    if status != Status.RUNNING.value or current != token:
        raise StaleClaim(f"job {job_id!r}: claim {token} is no longer current (status {status},"
                         f" claim {current})", job_id=job_id, token=token)
