"""Wake-ups on PostgreSQL: a producer NOTIFYs the queue's channel after a commit that made jobs
claimable (so does a worker whose settle gave jobs back or released dependents or a group's
final job: its own claim takes no more than it asked for); a worker's supervisor LISTENs on a connection of its own and wakes its idle
children, who otherwise look for work only every ``fallback_interval`` (and when the next
delayed job is due), instead of asking the server every ``poll_interval``.

Why the NOTIFY is sent the way it is:

- after the commit, as its own statement, never inside the insert's transaction: a
  transaction that issued NOTIFY takes a database-wide lock at commit (the notification queue is
  kept in commit order), so every notifying commit of the whole database waits for the others;
  held around a big insert's commit, it would hold up every other producer's;
- debounced per process and queue (:class:`Notifier`): the first at once (a lone job starts
  without delay), then none until DEBOUNCE seconds have passed, and one at the end of that window
  for the jobs made ready during it (the trailing one: the last job of a burst never waits for
  the fallback poll). A batch of any size is one; a burst of single enqueues is about one a
  window. A NOTIFY per row (a trigger, as procrastinate does) would take that lock per job.

A cancel of a running job NOTIFYs the same channel with the payload ``cancel``: the supervisor
then looks at its running jobs at once rather than at its next ``reap_interval``
(:meth:`Listener.cancels`); it does not wake idle children.

Notifications are hints. One can be lost (sent while the listener was reconnecting, or a
NOTIFY that failed after its jobs were committed); idle children still look on their own every
fallback interval, and a listener that (re)connects wakes them once for what it may have missed.

``?wakeups=poll`` in the URL (poll-only) sends no NOTIFY and makes no LISTEN connection; idle
children look every ``poll_interval``. It is for connections through a pooler that does not keep
a session (PgBouncer in transaction mode), where a LISTEN would be made on whichever server
connection the pooler lends and heard on none.
"""

from __future__ import annotations

import hashlib
import math
import os
import select
import threading
import time
import weakref
from typing import Any

import psycopg

from .._logging import get_logger
from ..errors import StorageError
from .db import Db, connect, storage_error
from .operating import CANCEL_PAYLOAD
from .url import PgLocation

DEBOUNCE = 0.05  # seconds: at most one NOTIFY a window per process and queue, plus the trailing one
RELISTEN_FIRST = 1.0  # seconds before a lost listener tries again, doubling up to RELISTEN_MAX
RELISTEN_MAX = 30.0
DRAIN_ROUNDS = 3  # reads of the listen socket per call: what is left is read at the next call

log = get_logger(__name__)


def channel(queue: str) -> str:
    """The queue's channel: a hash, so any queue name fits a 63-byte identifier unquoted."""
    return "jobq_" + hashlib.blake2b(queue.encode(), digest_size=12).hexdigest()


class Notifier:
    """One process's debounced NOTIFY of one queue, sent on the engine's own connection.

    The trailing NOTIFY is sent from a timer thread; the connection is shared safely because
    :class:`~jobq.postgres.db.Db` lets one thread at a time use it, a transaction included. The
    timer is not a daemon: a process that exits within the window still sends it. Before the
    process forks (a worker starting its children), a pending one is sent at once and its thread
    ended: a thread alive at a fork may hold a lock the child then waits for forever (and Python
    3.12 warns of it).
    """

    def __init__(self, db: Db, queue: str, window: float = DEBOUNCE) -> None:
        self._db = db
        # One statement, its own transaction: a commit that has nothing to make durable need
        # not wait for the WAL flush (a NOTIFY is delivered at commit, not at the flush; one
        # lost in a crash is a hint lost, which the fallback poll covers).
        self._sql = ("SELECT set_config('synchronous_commit', 'off', true),"
                     f" pg_notify('{channel(queue)}', '')")
        self._window = window
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._sent_at = -math.inf  # monotonic time of the last NOTIFY
        self._timer: threading.Timer | None = None  # the trailing NOTIFY, while it is due
        self._thread: threading.Timer | None = None  # the last timer, until it has ended
        _NOTIFIERS.add(self)

    def jobs_ready(self) -> None:
        """Jobs were just committed claimable: NOTIFY now, or at the end of the window."""
        if os.getpid() != self._pid:  # forked: the parent's timer did not come along
            self._pid, self._mutex = os.getpid(), threading.Lock()
            self._timer = self._thread = None
            self._sent_at = -math.inf
        now = time.monotonic()
        with self._mutex:
            if self._timer is not None:  # the trailing one will cover these jobs too
                return
            wait = self._sent_at + self._window - now
            if wait > 0:
                self._timer = self._thread = threading.Timer(wait, self._trailing)
                self._timer.name = "jobq-notify"
                self._timer.start()
                return
            self._sent_at = now
        self._send()

    def flush(self) -> None:
        """Send the trailing NOTIFY now, if one is due, and end its thread (the engine is
        closing, or the process forking)."""
        if os.getpid() != self._pid:
            return
        with self._mutex:
            timer, self._timer = self._timer, None
            thread = self._thread
            self._sent_at = time.monotonic()
        if timer is not None:
            timer.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # it sees it was flushed, or ends its send
        if timer is not None:
            self._send()

    def _trailing(self) -> None:
        with self._mutex:
            if self._timer is not threading.current_thread():  # flushed meanwhile
                return
            self._timer = None
            self._sent_at = time.monotonic()
        self._send()

    def _send(self) -> None:
        """NOTIFY; a failure is logged, not raised: the jobs are committed, and idle workers
        find them at their next fallback look."""
        try:
            self._db.execute(self._sql, doing="notify the queue's workers")
        except StorageError as exc:
            log.warning("queue.notify_failed", error=str(exc))


_NOTIFIERS: weakref.WeakSet[Notifier] = weakref.WeakSet()


def _flush_before_fork() -> None:
    for notifier in list(_NOTIFIERS):
        notifier.flush()


os.register_at_fork(before=_flush_before_fork)


class Listener:
    """A worker supervisor's LISTEN connection (:class:`jobq.engine.Wakeups`).

    Not the liveness lock's connection: that one must stay idle, and losing it means the worker
    is dead to the others, while a lost listener only costs wake-ups. When it is lost (a server
    restart, a terminated backend) the worker goes on, its children looking every fallback
    interval, and LISTENs again after RELISTEN_FIRST seconds, then less and less often.
    """

    def __init__(self, loc: PgLocation, logger: Any) -> None:
        self._loc = loc
        self._sql = f"LISTEN {channel(loc.queue)}"
        self._log = logger
        self._pid = os.getpid()
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_in = RELISTEN_FIRST
        self._retry_at = 0.0
        self._cancels = False  # a cancel was heard (or may have been missed) since last asked
        self._listen()

    def fileno(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else conn.fileno()

    def heard(self) -> bool:
        """True if a NOTIFY came, or we listen again after a loss (one may have been missed)."""
        conn = self._conn
        if conn is None:
            return time.monotonic() >= self._retry_at and self._listen()
        heard = False
        try:
            for _ in range(DRAIN_ROUNDS):
                if not select.select([conn.fileno()], [], [], 0)[0]:
                    break
                for notify in conn.notifies(timeout=0):
                    if notify.payload == CANCEL_PAYLOAD:
                        self._cancels = True
                    else:
                        heard = True
        except psycopg.Error as exc:
            self._lost(storage_error(exc, self._loc, "listen for new jobs"))
        return heard

    def cancels(self) -> bool:
        """True if a running job was asked to cancel (a NOTIFY of :func:`operating.cancel`), or
        may have been while the listener was lost, since the last call."""
        cancels, self._cancels = self._cancels, False
        return cancels

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:  # never a parent's, from a fork
            conn.close()

    def _listen(self) -> bool:
        conn = None
        try:
            conn = connect(self._loc)
            conn.execute(self._sql)
        except (StorageError, psycopg.Error) as exc:
            if conn is not None:
                conn.close()
            error = exc if isinstance(exc, StorageError) else \
                storage_error(exc, self._loc, "listen for new jobs")
            self._lost(error)
            return False
        if self._retry_in > RELISTEN_FIRST:  # it was lost: say it is back
            self._log.info("worker.wakeups_restored", queue=self._loc.location)
        self._conn, self._retry_in = conn, RELISTEN_FIRST
        self._cancels = True  # one may have been sent while nobody listened
        return True

    def _lost(self, error: StorageError) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._retry_in == RELISTEN_FIRST:  # once per outage
            self._log.warning("worker.wakeups_lost", error=str(error),
                              fallback="idle children look for jobs every fallback_interval")
        self._retry_at = time.monotonic() + self._retry_in
        self._retry_in = min(self._retry_in * 2, RELISTEN_MAX)
