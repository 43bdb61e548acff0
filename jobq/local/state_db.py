"""The state database: one SQLite file in WAL mode, its connection and its write transactions.

What its tables hold, and how the index and the snapshots use them, is :mod:`jobq.local.store`'s.

Write transactions take a blocking ``flock`` first, then ``BEGIN IMMEDIATE``: SQLite's own busy
handler sleeps in growing steps and was measured to starve one of two workers; the OS lock queues
them fairly.

Group commit: a transaction commits with ``synchronous=NORMAL`` (SQLite writes its frames to the
WAL without an fsync) and the WAL is fdatasynced once both locks are released, before the call
returns. So a write is durable when its call returns, as with ``synchronous=FULL``, but the next
writer does not wait behind this one's fsync, and one fsync covers every commit before it: the WAL
is written in order, and SQLite's recovery keeps every frame up to the last whole commit. (A
checkpoint that copies frames into the database and restarts the WAL fsyncs both files first.)
What changes: another process may see a change up to one fsync before it is durable, so a power
cut in that instant can take back a change that was seen but not yet returned; for a finished job
this means it runs again, as after a worker that dies before recording it.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from . import dependencies, durable, groups, limits, retention, totals, wal
from ._flock import ProcessLock, fork_generation
from .._logging import get_logger
from .directory import QueueDir
from ..errors import StorageError
from .log import Log, Position
from ..pickling import PickleRules
from .shelf import StateShelf
from .sqlite_errors import damaged, raise_translated, storage_error, translated
from ..state import FINISHED, Status
from .sqlite_dbm import TABLE_SQL, SqliteDbm, connect

log = get_logger(__name__)

# 2: jobs gained snap, started_at and prefetched; 3: job_counts; 4: schedules (its table is
# made by the CREATE ... IF NOT EXISTS of _SCHEMA when a file of 3 is opened); 5: dependencies
# and the status 'waiting' (jobq.local.dependencies; its table is made the same way); 6: groups
# (q.map, jobq.local.groups), limits, job_keys and held_back (jobq.local.limits), retention
# (jobq.local.retention: result_ttl, failure_ttl, expires_at) and job_totals (jobq.local.totals:
# counted from the jobs when it is made), all made the same way (an older jobq must not open the
# file: it would end group members without counting them, run limited jobs past their limits,
# never purge expired jobs and leave the totals behind); 7: a plain success is stored as a compact
# tuple with snap = 2 (jobq.local.snapshots); nothing to migrate, the rows of 6 keep their whole
# snapshots (an older jobq must not open the file: it would read such a job's tuple as its state)
STORE_SCHEMA = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    run_at REAL NOT NULL,
    max_attempts INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_expires REAL,
    enqueued_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    snap INTEGER NOT NULL DEFAULT 1,
    started_at REAL,
    prefetched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS ready (
    neg_priority INTEGER NOT NULL, seq INTEGER NOT NULL, job_id TEXT NOT NULL,
    PRIMARY KEY (neg_priority, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scheduled (
    run_at REAL NOT NULL, seq INTEGER NOT NULL, job_id TEXT NOT NULL,
    PRIMARY KEY (run_at, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    segment INTEGER NOT NULL, offset INTEGER NOT NULL, end_offset INTEGER NOT NULL,
    reason TEXT NOT NULL, saved_to TEXT NOT NULL, found_at REAL NOT NULL,
    PRIMARY KEY (segment, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY, cron TEXT NOT NULL, tz TEXT NOT NULL, spec TEXT NOT NULL,
    next_at REAL NOT NULL, last_job TEXT) WITHOUT ROWID;
""" + dependencies.SCHEMA + groups.SCHEMA + limits.SCHEMA + retention.SCHEMA

# Finished jobs per status (succeeded, dead, cancelled), so that counts() and `jobq status` never
# count the finished jobs kept, however many. Every status change goes through one of three paths,
# each of which moves the counts in the same transaction, once per batch: settle.store_transitions
# (settle, cancel, retry; see move_counts), purge (see move_counts), and the index's rebuild
# (see recount). Jobs waiting or running are counted from the status index when asked (as many
# as the backlog, not the jobs kept). Triggers on the jobs table would keep the counts whatever
# the path, but they run a subprogram per changed row: measured, +4 to +8 us of CPU per job a
# worker claims and settles (10-20% of it); this costs one statement per batch.
_FINISHED_SQL = "(" + ", ".join(f"'{s.value}'" for s in sorted(FINISHED)) + ")"
_COUNTS = ("CREATE TABLE IF NOT EXISTS job_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL)"
           " WITHOUT ROWID")
# IN, not NOT IN: each status is a seek into the status index, past the finished jobs' rows.
UNFINISHED_COUNTS = ("SELECT status, COUNT(*) FROM jobs WHERE status IN ("
                     + ", ".join(f"'{s.value}'" for s in sorted(set(Status) - FINISHED))
                     + ") GROUP BY status")


def move_counts(conn: sqlite3.Connection, was: Status | None, to: Counter[Status]) -> None:
    """Inside the write transaction that changes them: ``to[s]`` jobs went from ``was`` to ``s``
    (``was`` None: they were inserted; ``to`` negative: deleted)."""
    delta: Counter[str] = Counter()
    for status, n in to.items():
        if status is was or not n:
            continue
        if status in FINISHED:
            delta[status.value] += n
        if was in FINISHED:
            delta[was.value] -= n
    if delta:
        conn.executemany("INSERT INTO job_counts (status, n) VALUES (?, ?) ON CONFLICT (status)"
                         " DO UPDATE SET n = n + excluded.n", list(delta.items()))


def recount(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: count the finished jobs again (a new or rebuilt index)."""
    conn.execute("DELETE FROM job_counts")
    conn.execute("INSERT INTO job_counts (status, n) SELECT status, COUNT(*) FROM jobs"
                 f" WHERE status IN {_FINISHED_SQL} GROUP BY status")


# Tables: one missing (a damaged or hand-edited file) is made again on open.
_TABLES = {"Dict", "meta", "jobs", "ready", "scheduled", "quarantine", "job_counts",
           "schedules", "dependencies", "groups", "retention", "job_totals"} | limits.TABLES

# Schema 1 rows have full snapshots (snap = 1) and no start time in the row (NULL: the snapshot's).
_ADDED_IN_2 = ("snap INTEGER NOT NULL DEFAULT 1", "started_at REAL",
               "prefetched INTEGER NOT NULL DEFAULT 0")

def _create_counts(conn: sqlite3.Connection) -> None:
    """Inside the schema's write transaction: the counts table, counted if it is new (a file of
    schema 2 or older, or one that lost it)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_counts'").fetchone() is None:
        conn.execute(_COUNTS)
        recount(conn)


class StateDB:
    """The state database of one queue directory: a connection per process (reopened after a
    fork), read and write transactions, and the schema."""

    def __init__(self, qdir: QueueDir, log_: Log, *, rules: PickleRules,
                 secret_key: bytes | None, old_keys: tuple[bytes, ...] = ()) -> None:
        self._qdir = qdir
        self._log = log_  # only to warn, when the file is new, that the log's jobs are queued again
        self._rules = rules
        self._key = secret_key
        self._old_keys = old_keys
        self.lock = ProcessLock(qdir.state_lock)
        self._mutex = threading.RLock()  # one connection per process, shared by its threads
        self._path = qdir.state_db  # joined once: every write names it (errors, the WAL's sync)
        self._wal_path = wal.path_of(self._path)
        self._wal = wal.Growth(self._path)  # see _Write.__exit__
        self._pid = -1
        self._generation = -1  # fork_generation() of the process that opened _conn
        self._conn: sqlite3.Connection | None = None
        self._shelf: StateShelf | None = None
        self._shared_view: mmap.mmap | None = None  # see shared_view
        self._open()

    def _open(self) -> None:
        # A SQLite connection must never be used across fork(): a child opens its own (its copy
        # of the parent's was closed, or set aside, at the fork: see sqlite_dbm._after_fork).
        try:
            conn = connect(self._qdir.state_db)
        except sqlite3.Error as exc:
            raise storage_error(exc, self._qdir.state_db) from exc
        try:
            # Group commit (see the module docstring): every write transaction syncs the WAL
            # itself once it has released the write lock.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise storage_error(exc, self._qdir.state_db) from exc
        self._conn, self._pid, self._generation = conn, os.getpid(), fork_generation()
        self._shelf = StateShelf(SqliteDbm(conn, create=False), rules=self._rules,
                                 secret_key=self._key, old_keys=self._old_keys)
        try:
            self._check_size(conn)
            self._create_schema(conn)
        except BaseException:
            self.close()
            raise

    def _check_size(self, conn: sqlite3.Connection) -> None:
        """Refuse a file cut inside a page: SQLite reads the missing bytes as zeros, so the rows
        of that last page would come back silently wrong. (SQLite writes whole pages only.)"""
        with translated(self._qdir.state_db):
            page = conn.execute("PRAGMA page_size").fetchone()[0]
        size = os.stat(self._qdir.state_db).st_size
        try:
            wal_size = os.stat(wal.path_of(self._qdir.state_db)).st_size
        except FileNotFoundError:
            wal_size = 0
        # With a WAL, a partial last page is a checkpoint that failed part-way (a full disk): the
        # WAL still holds every page it was copying, and the next checkpoint rewrites them.
        if size % page and not wal_size:
            raise damaged(self._qdir.state_db, f"truncated: {size} bytes is not a whole number"
                                               f" of {page}-byte pages")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        with self.reading():  # the usual case, read-only: no write transaction, no fsync
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == STORE_SCHEMA and _TABLES <= tables:
            return
        with self.write(always_sync=True):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self._log.has_more(Position(1, 0)):
                # Under the write lock: no producer can have enqueued into a queue this new.
                log.warning("store.index_rebuilt", path=self._qdir.state_db,
                            reason="state database missing or empty",
                            consequence="every job in the log is queued again; finished jobs"
                                        " run again")
            if version > STORE_SCHEMA:
                raise StorageError(
                    f"{self._qdir.state_db} has store schema {version}; this jobq knows"
                    f" {STORE_SCHEMA}: upgrade jobq", path=self._qdir.state_db)
            conn.execute(TABLE_SQL)  # shelve's mapping, created with the index tables
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            for column in _ADDED_IN_2:  # a schema 1 file: rows keep their meaning (see above)
                if column.split()[0] not in have:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
            _create_counts(conn)
            totals.create(conn)
            conn.execute(f"PRAGMA user_version = {STORE_SCHEMA}")

    # A forked child opens its own connection; fork_generation() tells one without the getpid
    # system call these properties would otherwise make on every write.
    @property
    def conn(self) -> sqlite3.Connection:
        if self._generation != fork_generation():
            self._open()
        assert self._conn is not None
        return self._conn

    @property
    def shelf(self) -> StateShelf:
        if self._generation != fork_generation():
            self._open()
        assert self._shelf is not None
        return self._shelf

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the connection for reads; SQLite failures become StorageError naming the file."""
        with self._mutex, translated(self._qdir.state_db):
            yield

    def write(self, *, always_sync: bool = False, sync: bool = True) -> _Write:
        """One write transaction, serialised across threads and processes; durable once the
        ``with`` block is left (the WAL is synced after the locks are released: see the module
        docstring). Without ``always_sync`` the sync is skipped if no row changed, which is
        wrong for a transaction that changes only the schema (or VACUUMs). Without ``sync`` it
        is always skipped: the change outlives the process at once (it is in the WAL), a power
        cut only once the next write syncs."""
        return _Write(self, sync, always_sync)

    def sync_wal(self) -> None:
        """fdatasync the WAL: every commit written to it so far becomes durable.

        Opened anew each time (two system calls beside an fsync's hundred microseconds), so a
        descriptor can never outlive the file it names.
        """
        path = self._wal_path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                durable.sync_file(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot fsync {path}: {exc.strerror or exc}; the last change to"
                               " the state database may not survive a power cut", path=path,
                               errno=exc.errno) from exc

    def shared_view(self, size: int) -> mmap.mmap:
        """The first ``size`` bytes of the state lock file (:meth:`ProcessLock.shared`), mapped
        read-only: a process polling them for a change reads them without a system call. The
        mapping stays valid in a forked child (a shared mapping of the file)."""
        view = self._shared_view
        if view is None or len(view) < size:
            fd = os.open(self._qdir.state_lock, os.O_RDWR | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size < size:
                    # Zeros, as ProcessLock.shared reads past the end; never shrinks the file,
                    # so a holder's concurrent write is kept.
                    os.ftruncate(fd, size)
                view = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            if self._shared_view is not None:
                self._shared_view.close()
            self._shared_view = view
        return view

    def close(self) -> None:
        with self._mutex:
            if self._shared_view is not None:
                self._shared_view.close()
                self._shared_view = None
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = self._shelf = None
            self._pid = self._generation = -1
            self.lock.close()


class _Write:
    """:meth:`StateDB.write`'s transaction: the thread mutex, the process lock, ``BEGIN
    IMMEDIATE``; then ``COMMIT`` (or ``ROLLBACK``), the process lock released, the WAL synced
    and the mutex released. SQLite failures become StorageError as in :func:`translated`.

    A class, not two nested generator-based context managers: a worker enters one per batch
    and per ``ctx.save``, where the generators cost about a tenth of a checkpoint's CPU (issue 19).
    """

    __slots__ = ("_db", "_sync", "_always", "_conn", "_before")

    def __init__(self, db: StateDB, sync: bool, always_sync: bool) -> None:
        self._db, self._sync, self._always = db, sync, always_sync

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        db._mutex.acquire()
        try:
            db.lock.acquire()
            try:
                conn = self._conn = db.conn
                self._before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                db.lock.release()
                raise
        except BaseException as exc:
            db._mutex.release()
            raise_translated(exc, db._path)
            raise
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        db, conn = self._db, self._conn
        try:
            try:
                if exc is None:
                    if not db._wal.whole and conn.total_changes != self._before:
                        db._wal.extend(conn)  # so that this commit overwrites: see jobq.local.wal
                    conn.execute("COMMIT")
            finally:
                try:
                    # Also after a failed COMMIT (disk full, I/O error), which can leave it open.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                finally:
                    db.lock.release()
            if exc is None and self._sync and (self._always or conn.total_changes != self._before):
                db.sync_wal()
        except BaseException as failed:
            raise_translated(failed, db._path)
            raise
        finally:
            db._mutex.release()
        if exc is not None:
            raise_translated(exc, db._path)  # else the body's own exception goes on

