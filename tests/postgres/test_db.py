"""The process's connection (jobq.postgres.db.Db): a queue dropped without being closed ends its
session when it is collected, and a forked child's copy never ends its parent's."""

from __future__ import annotations

import gc
import os
import time

import psycopg

from jobq import Queue
from jobq.postgres.db import Db
from jobq.postgres.url import parse


def _alive(pg_url: str, backend: int) -> bool:
    with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                            (backend,)).fetchone()[0] == 1


def _ended(pg_url: str, backend: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while gc.collect() >= 0 and _alive(pg_url, backend):  # (a queue's objects make cycles)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_queue_dropped_unclosed_ends_its_session_without_a_warning(pg_url: str) -> None:
    """Its producer's trailing NOTIFY still pending (a timer thread holds the connection until
    it is sent): the session ends when the last reference goes, in that thread. Before, psycopg
    warned there of a connection deleted while open, and this suite turns that into an error of
    whichever test runs then."""
    q = Queue(pg_url)
    q.enqueue("jobtasks:add", 1, 2)
    q.enqueue("jobtasks:add", 2, 3)  # within the debounce window: a trailing NOTIFY is due
    backend = q.engine._db.conn.info.backend_pid
    del q
    assert _ended(pg_url, backend)
    with Queue(pg_url) as q:
        assert q.counts()["queued"] == 2


def test_a_forked_child_dropping_its_copy_leaves_the_parents_session(pg_url: str) -> None:
    db = Db(parse(pg_url))
    try:
        backend = db.execute("SELECT pg_backend_pid()")[0][0]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                del db
                gc.collect()  # (a forked child of this suite may warn: it is not reported)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert db.execute("SELECT pg_backend_pid()")[0][0] == backend
    finally:
        db.close()
    assert _ended(pg_url, backend)
