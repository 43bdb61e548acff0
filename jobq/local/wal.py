"""Give SQLite's write-ahead log its working size early, so that commits overwrite, not append.

A commit that appends frames to the ``-wal`` file makes its fdatasync allocate blocks and journal
the file's new size; a commit that writes over bytes the file already holds does neither. Measured
here (the closing note of issue 6): one checkpoint (two 4 KiB frames) costs about 340 µs while the
WAL grows and about 230 µs once it overwrites, against about 125 µs for a small append + fdatasync.
SQLite starts again from the front of its WAL after a checkpoint and never shrinks it (we set no
``journal_size_limit``), so a queue reaches the cheap case by itself, but only after about a thousand
commits, and again each time the last connection closes and SQLite removes the file.

A worker's supervisor presizes the WAL (:class:`Housekeeping`), a megabyte at each of its upkeep
steps, from its first step after its children start. The zeros are written under the write lock:
the whole 4 MiB at once (some 6 ms here, with its fdatasync) held the children's first claims back
that long, a tenth of a new worker's time to its first job (issue 19). So the children's first
writes come first (a ``ctx.save`` in a new worker's first tenth of a second commits into a short
WAL), and every writer keeps the WAL a step ahead of its commits while it is short
(:class:`Growth`): before a commit, zeros past the file's end, a step that doubles from 64 KiB to
1 MiB, so that this commit and the next ones overwrite. They are made durable by the commit's own
fdatasync, which then commits the new size once for many commits.

Zeros past the last frame are safe: SQLite reads a WAL only up to the first frame whose salt and
checksum do not follow from the header (that is how it ignores the stale frames of a reused WAL),
and a zero frame never does. The zeros are written while holding the write transaction, so no
connection appends frames meanwhile; readers never look past the last committed frame.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

from . import durable
from ..errors import StorageError
from .._logging import get_logger

if TYPE_CHECKING:
    from .state_db import StateDB  # which imports this module

log = get_logger(__name__)

WAL_HEADER = 32
FRAME_HEADER = 24
_CHUNK = 1 << 20  # the most zeros written at once (bytes(n): calloc'd, made when written)
FIRST_STEP = 64 << 10  # a few commits' worth: little for a one-off command to write


def path_of(db_path: str) -> str:
    return db_path + "-wal"


def working_size(conn: sqlite3.Connection) -> int:
    """The size the WAL reaches before SQLite checkpoints it by itself (``wal_autocheckpoint``)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    frames = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    return WAL_HEADER + max(frames, 0) * (page_size + FRAME_HEADER)


def needs_presize(db_path: str, size: int) -> bool:
    """One stat: is the WAL there (SQLite made it) and smaller than ``size``?"""
    try:
        return os.stat(path_of(db_path)).st_size < size
    except FileNotFoundError:
        return False  # SQLite creates it; we never do


def presize(db_path: str, size: int, most: int | None = None) -> int:
    """Extend the WAL with zeros towards ``size`` bytes, by at most ``most`` bytes (None: all
    the way), and make them durable; return the bytes added.

    Call it inside a write transaction on the database (see the module docstring).
    """
    try:
        fd = os.open(path_of(db_path), os.O_WRONLY | os.O_CLOEXEC)  # no O_CREAT: SQLite's or none
    except FileNotFoundError:
        return 0
    try:
        start = offset = os.fstat(fd).st_size
        if most is not None:
            size = min(size, start + most)
        while offset < size:
            offset += os.pwrite(fd, bytes(min(size - offset, _CHUNK)), offset)
        if offset > start:
            durable.sync_file(fd)
        return offset - start
    finally:
        os.close(fd)


class Growth:
    """One process's view of its WAL: extended a step past its end before a commit while it is
    shorter than its working size and its commits have used the zeros written last (see the
    module docstring); once seen whole, one attribute test per commit. If SQLite removes or
    truncates the file meanwhile (its last connection closed, ``wal_checkpoint(TRUNCATE)``), a
    worker's supervisor presizes it again."""

    def __init__(self, db_path: str) -> None:
        self._path = path_of(db_path)
        self._target: int | None = None  # working_size(), read at the first commit
        self._step = FIRST_STEP
        self._zeroed = -1  # the size this process last extended the WAL to
        self.whole = False

    def extend(self, conn: sqlite3.Connection) -> None:
        """Inside a write transaction on ``conn``, before it commits: zeros a step past the WAL's
        end if a commit has written past the zeros written last (the file grew since), unless
        the WAL has its working size. Only saves time, so a failure (a full disk) is logged
        once and ends the growing in this process."""
        try:
            if self._target is None:
                self._target = working_size(conn)
            try:
                size = os.stat(self._path).st_size
            except FileNotFoundError:
                return  # SQLite makes it (at the commit): nothing to extend yet
            if size >= self._target:
                self.whole = True
            elif size != self._zeroed:  # (a commit can only append to it: SQLite's WAL)
                self._zeroed = self._write_zeros(size, min(size + self._step, self._target))
                self._step = min(2 * self._step, _CHUNK)
        except (OSError, sqlite3.Error) as exc:
            self.whole = True
            log.warning("store.wal_presize_failed", path=self._path, error=str(exc))

    def _write_zeros(self, start: int, end: int) -> int:
        fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)  # SQLite's file: never created here
        try:
            while start < end:
                start += os.pwrite(fd, bytes(min(end - start, _CHUNK)), start)
        finally:
            os.close(fd)
        return end


class Housekeeping:
    """The WAL upkeep a worker's supervisor does while its children run jobs: presize the WAL and
    checkpoint it, so that the children's commits do not have to."""

    def __init__(self, db: StateDB, db_path: str) -> None:
        self._db = db
        self._db_path = db_path
        self._size: int | None = None  # the working size, read once (see presize_wal)

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (SQLite's passive checkpoint: it never waits for
        writers), so that workers committing batches do not have to stop for it themselves."""
        with self._db.reading():
            self._db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def presize_wal(self, most: int | None = None) -> int:
        """Bring the WAL towards its working size, by at most ``most`` bytes (None: all of it;
        see the module docstring); return the bytes added.

        A worker's supervisor calls it while its children run jobs: every commit after the WAL
        is whole (a checkpoint, a batch of claims and completions) overwrites instead of
        appending. Each call holds the write lock while it writes and syncs its zeros, so the
        supervisor gives a step's worth at a time. It only saves time, so a failure (a full
        disk) is logged and leaves everything as it was.
        """
        db_path = self._db_path
        if self._size is None:
            with self._db.reading():
                self._size = working_size(self._db.conn)
        if not needs_presize(db_path, self._size):
            return 0
        try:
            with self._db.write():
                added = presize(db_path, self._size, most)
        except (OSError, StorageError) as exc:
            log.warning("store.wal_presize_failed", path=path_of(db_path), error=str(exc))
            return 0
        if added:
            log.debug("store.wal_presized", bytes=added, size=self._size)
        return added
