"""One process's connection to the queue's database, and the errors it turns into jobq's.

One connection per process, made when first used and made again after it broke (the next call
reconnects; the failed one raised :class:`~jobq.errors.StorageError`). A forked child never
uses, nor closes, its parent's connection: closing it would end the parent's session (see
:meth:`Db.close`); the engine's ``reopen`` gives the child its own.

Sessions are autocommit: a read is one statement, and a write opens its transaction explicitly
(:meth:`Db.transaction`), so no session ever sits idle inside a transaction.

One thread at a time uses the connection, for a whole transaction: a producer's trailing NOTIFY
is sent from a timer thread (:mod:`jobq.postgres.wakeups`), and a statement of it sent while
another thread is inside a transaction would join that transaction.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..errors import StorageError
from . import session
from .url import PgLocation


# SQLSTATE classes after which the same call may succeed later: connection exception,
# insufficient resources (too many clients), operator intervention (shutdown, restart, cancel),
# transaction rollback (serialization failure, deadlock).
TRANSIENT_CLASSES = frozenset({"08", "53", "57", "40"})
# A connection refused by a server that answered (FATAL) is permanent (no such database or role,
# bad password, no pg_hba.conf entry), unless the server says why it cannot take one now.
_BUSY_SERVER = ("starting up", "shutting down", "in recovery", "recovery is in progress",
                "not yet accepting connections", "too many clients", "connection slots")


def is_transient(exc: BaseException, broken: bool = False) -> bool:
    """Whether the call that raised ``exc`` may succeed later (on a new session if ``broken``).

    A failure to connect carries no SQLSTATE: one the server refused with FATAL is permanent
    unless the server is busy restarting or full; one it never answered (refused, timed out,
    unreachable) is transient.
    """
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is not None:
        return state[:2] in TRANSIENT_CLASSES or broken
    if not isinstance(exc, psycopg.OperationalError):
        return broken  # e.g. an InterfaceError of a connection closed under us
    text = str(exc)
    return "FATAL:" not in text or any(why in text for why in _BUSY_SERVER)


def storage_error(exc: BaseException, loc: PgLocation, doing: str,
                  broken: bool = False) -> StorageError:
    """A StorageError naming the server (never its password) and what failed; ``transient``
    if retrying may get past it (see :func:`is_transient`)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return StorageError(f"PostgreSQL at {loc.server} (queue {loc.queue!r}): cannot {doing}:"
                        f" {first}", server=loc.server, queue=loc.queue,
                        transient=is_transient(exc, broken))


def _close_unless_forked(conn: psycopg.Connection[Any], pid: int) -> None:
    if os.getpid() == pid:  # (a parent's session is not a forked child's to end)
        conn.close()


def connect(loc: PgLocation, **options: Any) -> psycopg.Connection[Any]:
    """A new autocommit session with jobq's settings (:mod:`jobq.postgres.session`: a cut
    network is noticed within about 30 s); StorageError if the server cannot be reached."""
    given = {**session.client_settings(loc.conninfo), **options}
    startup = session.startup_options(loc.conninfo, loc.server)
    try:
        try:
            conn = psycopg.connect(loc.conninfo, autocommit=True,
                                   **({**given, "options": startup} if startup else given))
        except psycopg.Error as exc:
            if startup is None or not session.refused_at_start(exc, loc.server):
                raise
            startup = None  # configured once connected, as that server needs
            conn = psycopg.connect(loc.conninfo, autocommit=True, **given)
    except psycopg.Error as exc:
        raise storage_error(exc, loc, "connect") from exc
    if startup is not None and not session.first_on(loc.server):
        return conn
    try:
        if session.configure(conn, loc.server) and startup is not None:
            session.dropped_at_start(loc.server)
    except psycopg.Error as exc:
        conn.close()
        raise storage_error(exc, loc, "connect", broken=True) from exc
    return conn


class Db:
    """The process's connection, made on first use and again after it broke."""

    def __init__(self, loc: PgLocation) -> None:
        self.loc = loc
        self._pid = os.getpid()
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()  # held while a thread uses the connection
        self._finalizer: weakref.finalize[Any, Any] | None = None  # ends an unclosed session

    def _forked(self) -> None:
        """Forked: the parent's session is not ours to use, nor its lock (which another of
        its threads may have held at the fork) ours to wait for."""
        if os.getpid() != self._pid:
            self._pid, self._conn, self._lock = os.getpid(), None, threading.RLock()

    @property
    def conn(self) -> psycopg.Connection[Any]:
        self._forked()
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = connect(self.loc)
            # A Db dropped unclosed (a Queue never closed, collected later, maybe in another
            # thread) ends its session then, as a file or an sqlite3 connection would, instead
            # of leaving psycopg to warn of an open connection.
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_unless_forked, conn, self._pid)
        return conn

    @contextmanager
    def transaction(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """A transaction, committed on leaving (one durable commit); a database error becomes
        a StorageError saying what was being done, and nothing of it is written."""
        with self.errors(doing):
            conn = self.conn
            with conn.transaction():
                yield conn

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Use the connection (one thread at a time); a database error becomes a StorageError."""
        self._forked()
        try:
            with self._lock:
                yield
        except psycopg.Error as exc:
            conn = self._conn
            broken = conn is not None and (conn.broken or conn.closed)
            if broken and conn is not None and os.getpid() == self._pid:
                conn.close()  # made again at the next call
            raise storage_error(exc, self.loc, doing, broken) from exc

    def execute(self, sql: str, args: Any = None, doing: str = "read") -> list[tuple[Any, ...]]:
        """One statement in its own (autocommit) transaction; its rows."""
        with self.errors(doing):
            cur = self.conn.execute(sql, args, prepare=True)
            return cur.fetchall() if cur.description is not None else []

    def close(self) -> None:
        """Close the connection, unless it is a parent's inherited across fork: a child that
        closed it would end its parent's session (the object is left to be dropped unclosed:
        psycopg does not close a connection of another process when it is collected)."""
        if os.getpid() != self._pid:
            self._conn = None
            return
        with self._lock:  # not under a thread's statement
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            if self._finalizer is not None:
                self._finalizer.detach()
