"""The state store: job snapshots (``shelve``) and the index that finds the next job to run.

Both live in one SQLite file in WAL mode, so a snapshot and the index rows that go with it commit
in one transaction. Tables::

    Dict        shelve's mapping (jobq.local.sqlite_dbm): job id -> pickled JobState, or a marker,
                or a plain success's tuple (jobq.local.snapshots says which: jobs.snap)
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

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from . import admin, catch_up, dependencies, groups, leases, reads, retention, totals, wal
from .. import record
from .directory import QueueDir
from ..engine import Change, Claim
from .log import Log, Position
from ..pickling import PickleRules
from .settle import Settler, write_transitions
from .shelf import StateShelf
from ..state import JobState, Status
from .state_db import StateDB

__all__ = ["Change", "Claim", "Store"]


class Store:
    """Job snapshots and the ready index of one queue directory.

    One object for the engine and the tests to hold; the work is in the modules of its concepts:
    :mod:`~jobq.local.settle` (the hot path: settle, claim, checkpoint, finish),
    :mod:`~jobq.local.reads`, :mod:`~jobq.local.catch_up` (the index against the log),
    :mod:`~jobq.local.leases`, :mod:`~jobq.local.admin` (cancel, requeue) and
    :mod:`~jobq.local.wal` (WAL housekeeping).
    """

    def __init__(self, qdir: QueueDir, log_: Log, *, rules: PickleRules, secret_key: bytes | None,
                 old_keys: tuple[bytes, ...] = (), clock: Callable[[], float] = time.time) -> None:
        self._qdir = qdir
        self._log = log_
        self._clock = clock
        self._db = StateDB(qdir, log_, rules=rules, secret_key=secret_key, old_keys=old_keys)
        self._settler = Settler(self._db, log_, clock)
        self._wal = wal.Housekeeping(self._db, qdir.state_db)

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

    @property
    def _fresh_claims(self) -> dict[tuple[str, int], tuple[tuple[Any, ...], JobState]]:
        """The rows and states of this process's latest claims without a snapshot (see
        Settler._prepare)."""
        return self._settler.fresh_claims

    def close(self) -> None:
        self._db.close()

    # -- catching up with the log (jobq.local.catch_up) ----------------------------------------

    def covered(self) -> Position:
        return catch_up.covered(self._db)

    def check_covered(self) -> None:
        catch_up.check_covered(self._db, self._log, self._qdir.state_db)

    def ensure_index(self) -> bool:
        return catch_up.ensure_index(self._db, self._log, self._clock)

    def rebuild_index(self) -> int:
        return catch_up.rebuild_index(self._db, self._log, self._clock)

    def catch_up(self, batches: int | None = None) -> int:
        return catch_up.catch_up(self._db, self._log, self._clock, batches)

    def quarantined(self) -> list[dict[str, Any]]:
        return catch_up.quarantined(self._db)

    # -- reading (jobq.local.reads) ------------------------------------------------------------

    def exists(self, job_id: str) -> bool:
        return reads.exists(self._db, job_id)

    def status(self, job_id: str) -> Status:
        return reads.status(self._db, job_id)

    def get(self, job_id: str) -> JobState:
        return reads.get(self._db, job_id)

    def cancel_requested(self, job_id: str) -> bool:
        return reads.cancel_requested(self._db, job_id)

    def payload_position(self, job_id: str) -> Position:
        return reads.payload_position(self._db, job_id)

    def job_record(self, job_id: str) -> record.Frame:
        return reads.job_record(self._db, self._log, job_id)

    def counts(self) -> dict[str, int]:
        return reads.counts(self._db)

    def rows(self, status: Status | None = None, limit: int = 100,
             newest_first: bool = True, **filters: Any) -> list[dict[str, Any]]:
        return reads.rows(self._db, status, limit, newest_first, **filters)

    def rough_counts(self, cap: int) -> dict[str, int]:
        return reads.rough_counts(self._db, cap)

    def oldest_due(self, now: float) -> float | None:
        return reads.oldest_due(self._db, now)

    def finish_times(self, status: Status, since: float, limit: int) -> list[float]:
        return reads.finish_times(self._db, status, since, limit)

    def next_waiting(self, now: float) -> dict[Status, float]:
        return reads.next_waiting(self._db, now)

    def totals(self) -> dict[tuple[str, str], float]:
        with self._db.reading():
            return totals.read(self._db.conn)

    def row(self, job_id: str) -> dict[str, Any]:
        return reads.row(self._db, job_id)

    def waiting(self, now: float) -> dict[tuple[Status, bool], float]:
        return reads.waiting(self._db, now)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        return reads.ids_starting_with(self._db, prefix, limit)

    def job_ids(self, status: Status | None = None, page: int = 500) -> Iterator[str]:
        return reads.job_ids(self._db, status, page)

    def positions(self, statuses: Iterable[Status], page: int = 500
                  ) -> Iterator[tuple[Position, str, Status]]:
        return reads.positions(self._db, statuses, page)

    def has_ready(self) -> bool:
        return reads.has_ready(self._db, self._log, self._clock)

    # -- dependencies (jobq.local.dependencies) -----------------------------------------------

    def add_dependencies(self, child: str, parents: Sequence[str], policy: str) -> bool:
        """Record ``child``'s parents before its record is appended (see the module)."""
        catch_up.catch_up(self._db, self._log, self._clock)
        with self._db.write() as conn:
            return dependencies.add(conn, child, parents, policy)

    def parents(self, child: str) -> list[str]:
        with self._db.reading():
            return dependencies.parents(self._db.conn, child)

    # -- groups (jobq.local.groups) ------------------------------------------------------------

    def open_group(self, group_id: str, chunk_size: int, then_job: str | None) -> None:
        with self._db.write() as conn:
            groups.open_group(conn, group_id, chunk_size, then_job, self._clock())

    def close_group(self, group_id: str, jobs: int, items: int) -> None:
        """No catch-up first (that would index the whole map before returning): a final job
        not indexed yet is indexed later as due, the group being done (groups.settle_new)."""
        with self._db.write() as conn:
            groups.close_group(conn, self._db.shelf, group_id, jobs, items, self._clock(),
                               write_transitions)

    def group(self, group_id: str) -> dict[str, Any]:
        catch_up.catch_up(self._db, self._log, self._clock)
        with self._db.reading():
            return groups.read(self._db.conn, group_id)

    def keep_for(self, job_ids: Sequence[str], result_ttl: float | None,
                 failure_ttl: float | None) -> None:
        """Record the jobs' ttls (jobq.local.retention), before or after their records.

        Not synced: the log append that follows is, and a power cut that loses the row only
        keeps the job for ever (never purges it early); the next write's sync covers it."""
        with self._db.write(sync=False) as conn:
            retention.keep(conn, job_ids, result_ttl, failure_ttl)

    # -- claiming and finishing (jobq.local.settle) --------------------------------------------

    def claim(self, owner: str, limit: int = 1, *, lease_seconds: float = 60.0) -> list[Claim]:
        return self._settler.claim(owner, limit, lease_seconds=lease_seconds)

    def settle(self, finished: list[tuple[str, int, Change]], owner: str, limit: int, *,
               lease_seconds: float = 60.0, prefetch: int = 0,
               started: Sequence[tuple[str, int]] = ()
               ) -> tuple[list[JobState | None], list[Claim]]:
        return self._settler.settle(finished, owner, limit, lease_seconds=lease_seconds,
                                    prefetch=prefetch, started=started)

    def save_checkpoint(self, job_id: str, token: int, checkpoint: Any,
                        progress: float | None) -> JobState:
        return self._settler.save_checkpoint(job_id, token, checkpoint, progress)

    def finish(self, job_id: str, token: int, change: Change) -> JobState:
        return self._settler.finish(job_id, token, change)

    # -- leases and liveness, for the worker runtime (jobq.local.leases) -----------------------

    def renew(self, owner: str, lease_seconds: float) -> int:
        return leases.renew(self._db, owner, lease_seconds, self._clock())

    def running(self, owner: str | None = None) -> list[tuple[str, int, str, float]]:
        return leases.running(self._db, owner)

    def running_claims(self) -> list[tuple[str, int, str, float, bool]]:
        return leases.running_claims(self._db)

    def cancelling(self, owner: str) -> set[tuple[str, int]]:
        return leases.cancelling(self._db, owner)

    # -- operator actions (jobq.local.admin) ---------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        return admin.cancel(self._db, self._log, job_id, self._clock)

    def requeue(self, job_id: str) -> bool:
        return admin.requeue(self._db, self._log, job_id, self._clock)

    def cancel_generation(self) -> int:
        """A number that changes each time a claimed job is asked to cancel (see admin.cancel).

        Cheap to poll (a read of shared memory: no system call, no SQLite): a worker child reads
        it before each job it prefetched and reads the cancelled claims (:meth:`cancelling`) only
        when it changed. It lives in the state lock file, so every process on the queue sees it;
        it is not durable, and needs not be: only processes alive together compare it. Read
        without the lock: a reader only compares it with the last value it saw, so a value read
        mid-write costs one extra read of the cancelled claims, never a missed one. Read here, not
        in a call to jobq.local.admin, as it is read once per job.
        """
        return admin.GENERATION.unpack_from(self._db.shared_view(8))[0]

    # -- WAL housekeeping (jobq.local.wal) -----------------------------------------------------

    def checkpoint(self) -> None:
        self._wal.checkpoint()

    def presize_wal(self, most: int | None = None) -> int:
        return self._wal.presize_wal(most)
