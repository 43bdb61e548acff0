"""Give SQLite's write-ahead log its working size at once, so that commits overwrite, not append.

A commit that appends frames to the ``-wal`` file makes its fdatasync allocate blocks and journal
the file's new size; a commit that writes over bytes the file already holds does neither. Measured
here (the closing note of issue 6): one checkpoint (two 4 KiB frames) costs about 340 µs while the
WAL grows and about 230 µs once it overwrites, against about 125 µs for a small append + fdatasync.
SQLite starts again from the front of its WAL after a checkpoint and never shrinks it (we set no
``journal_size_limit``), so a queue reaches the cheap case by itself, but only after about a thousand
commits, and again each time the last connection closes and SQLite removes the file.

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
_CHUNK = b"\0" * (1 << 20)


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


def presize(db_path: str, size: int) -> int:
    """Extend the WAL with zeros to ``size`` bytes and make them durable; return bytes added.

    Call it inside a write transaction on the database (see the module docstring).
    """
    try:
        fd = os.open(path_of(db_path), os.O_WRONLY | os.O_CLOEXEC)  # no O_CREAT: SQLite's or none
    except FileNotFoundError:
        return 0
    try:
        start = offset = os.fstat(fd).st_size
        while offset < size:
            offset += os.pwrite(fd, _CHUNK[:size - offset], offset)
        if offset > start:
            durable.sync_file(fd)
        return offset - start
    finally:
        os.close(fd)


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

    def presize_wal(self) -> int:
        """Give the WAL its working size now (see the module docstring); return the bytes added.

        A worker's supervisor calls it while its children run jobs: every commit after it
        (a checkpoint, a batch of claims and completions) overwrites instead of appending. It only
        saves time, so a failure (a full disk) is logged and leaves everything as it was.
        """
        db_path = self._db_path
        if self._size is None:
            with self._db.reading():
                self._size = working_size(self._db.conn)
        if not needs_presize(db_path, self._size):
            return 0
        try:
            with self._db.write():
                added = presize(db_path, self._size)
        except (OSError, StorageError) as exc:
            log.warning("store.wal_presize_failed", path=path_of(db_path), error=str(exc))
            return 0
        if added:
            log.debug("store.wal_presized", bytes=added, size=self._size)
        return added
