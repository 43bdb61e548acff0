"""A crash-safe ``dbm``-style mapping on SQLite in WAL mode, for ``shelve.Shelf``.

Python here has neither ``dbm.gnu`` nor ``dbm.ndbm``, so a bare ``shelve.open()`` falls back to
``dbm.dumb``, which can lose or corrupt data on a crash and is unsafe with several processes. This
is the equivalent of the standard ``dbm.sqlite3`` of Python 3.13 (same ``Dict`` table, so either
can read the other's file), with two differences the queue needs: it can live on a connection that
other tables share, so a snapshot and the index rows that go with it commit in one transaction; and
its connections commit with ``synchronous=FULL``, so a write that returned survives a power cut.
(The state store switches its own connection to ``NORMAL`` and syncs the WAL itself after each
write transaction, outside the write lock: see :mod:`jobq.local.state_db`.)
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import TypeVar

from .permissions import open_file

TABLE_SQL = "CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)"
_GET = "SELECT value FROM Dict WHERE key = CAST(? AS BLOB)"
_PUT = "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))"
_DEL = "DELETE FROM Dict WHERE key = CAST(? AS BLOB)"
_LEN = "SELECT COUNT(key) FROM Dict"
_KEYS = "SELECT key FROM Dict"

BUSY_TIMEOUT_MS = 60_000


class _Connection(sqlite3.Connection):
    """A connection jobq opened: known to its process until closed (see :func:`_after_fork`)."""

    def close(self) -> None:
        _open.discard(self)
        super().close()


_open: weakref.WeakSet[_Connection] = weakref.WeakSet()
_threads_at_fork = 1


def _before_fork() -> None:
    global _threads_at_fork
    _threads_at_fork = threading.active_count()


def _after_fork() -> None:
    """In a forked child: close the connections inherited from the parent, before any other use.

    SQLite keeps one record of locks per file and process, shared by all the process's
    connections to it, and a child inherits a copy that says the parent's locks are its own:
    while an inherited connection stays open, the child's own connections take no lock of their
    own on the file (they lean on the parent's, gone with the parent). Closed first, the copy
    goes away and the child's connections lock for themselves. Closing it harms nothing of the
    parent's: POSIX locks belong to a process and are not inherited, and the copy cannot
    checkpoint or delete the WAL while the parent's connection holds its shared lock.

    Unless another thread was running at the fork: it may have been inside SQLite, whose mutexes
    the child inherits held, and closing would hang. Then the copies are set aside, never closed
    nor freed (freeing one closes it; Python 3.13 also warns of it), the locks as above.
    """
    inherited = list(_open)
    _open.clear()
    for conn in inherited:
        if _threads_at_fork == 1:
            try:
                conn.close()
                continue
            except sqlite3.Error:
                pass  # set aside instead
        _keep_for_good(conn)


def _keep_for_good(conn: sqlite3.Connection) -> None:
    import ctypes  # only in a forked child that inherited connections
    keep = ctypes.pythonapi.Py_IncRef
    keep.argtypes, keep.restype = [ctypes.py_object], None
    keep(conn)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork)


# The bytes urllib.parse.quote_from_bytes(path) leaves as they are (its default safe="/").
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def uri_path(raw: bytes) -> str:
    """``urllib.parse.quote_from_bytes(raw)``, what pathlib's ``as_uri()`` gives, without
    importing urllib.parse (and the ipaddress it brings: some 13 M instructions of every
    worker's start, issue 19)."""
    return "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw)


def connect(path: str | os.PathLike[str], *, readonly: bool = False) -> sqlite3.Connection:
    """Open ``path`` with the settings every jobq connection uses: WAL, FULL sync, autocommit."""
    path = os.fspath(path)
    if not readonly and not os.path.exists(path):
        # Create the file ourselves, owner-only (or shared, in a shared queue): SQLite gives its
        # -wal and -shm files the same mode, whatever the umask.
        os.close(open_file(path, os.O_WRONLY))
    # Percent-encode the path ('?' and '#' in a directory name would otherwise end the path).
    where = uri_path(os.fsencode(os.path.abspath(path)))
    uri = f"file://{where}?mode={'ro' if readonly else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000, factory=_Connection)
    _open.add(conn)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = retry_locked(lambda: conn.execute("PRAGMA journal_mode = wal").fetchone()[0])
            if mode != "wal":
                raise sqlite3.OperationalError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        # In WAL mode NORMAL may lose the last commits on power loss; FULL fsyncs the WAL on commit.
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()  # a damaged file fails here: do not leak the connection
        raise
    return conn


T = TypeVar("T")


def retry_locked(operation: Callable[[], T], timeout: float = BUSY_TIMEOUT_MS / 1000) -> T:
    """Run ``operation``, retrying while SQLite reports the database locked.

    When several processes open a new database at once, switching it to WAL (or creating its
    tables) can fail with "database is locked" at once, without SQLite's busy handler waiting:
    SQLite refuses rather than risk a deadlock between two connections upgrading their locks.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class SqliteDbm(MutableMapping[bytes, bytes]):
    """``bytes -> bytes`` mapping in table ``Dict``; each write outside a transaction commits at once."""

    def __init__(self, conn: sqlite3.Connection, *, owns_connection: bool = False,
                 create: bool = True) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._owns = owns_connection
        if create:
            retry_locked(lambda: conn.execute(TABLE_SQL))

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("the mapping has been closed")
        return self._conn

    def __getitem__(self, key: bytes) -> bytes:
        row = self.conn.execute(_GET, (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.conn.execute(_PUT, (key, value))

    def __delitem__(self, key: bytes) -> None:
        if self.conn.execute(_DEL, (key,)).rowcount == 0:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self.conn.execute(_GET, (key,)).fetchone() is not None

    def __iter__(self) -> Iterator[bytes]:
        for (key,) in self.conn.execute(_KEYS):
            yield key

    def __len__(self) -> int:
        return self.conn.execute(_LEN).fetchone()[0]

    def sync(self) -> None:
        """Nothing to flush: every committed write is already durable."""

    def close(self) -> None:
        if self._conn is not None and self._owns:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> SqliteDbm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str | os.PathLike[str], flag: str = "c") -> SqliteDbm:  # noqa: A001 - dbm's name
    """Open a standalone mapping like ``dbm.open``: flag ``r`` (read-only), ``w``, ``c`` or ``n``."""
    if flag not in ("r", "w", "c", "n"):
        raise ValueError(f"flag must be one of 'r', 'w', 'c' or 'n', not {flag!r}")
    path = os.fspath(path)
    if flag == "n":
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
    if flag in ("r", "w") and not os.path.exists(path):
        raise FileNotFoundError(path)
    return SqliteDbm(connect(path, readonly=flag == "r"), owns_connection=True, create=flag != "r")
