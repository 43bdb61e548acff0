"""Wake-ups: producers NOTIFY after their commits, debounced; a worker LISTENs on one connection
and wakes its idle children, who otherwise look for jobs only every fallback interval.

The workers here look on their own only every 30 s (``fallback_interval``): a job they start
well before that was announced to them. Each test's worker connects with an application name of
its own, by which its sessions are found in ``pg_stat_activity``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

import jobtasks
from conftest import Children, wait_until
from jobq import Queue, Status
from jobq.postgres import PgEngine
from jobq.postgres.db import Db
from jobq.postgres.url import parse
from jobq.postgres.wakeups import DEBOUNCE, Notifier, channel

from .pgq import frames, open_url, succeed

WORKER = """
import sys
from jobq import Queue
from workers import Worker
Worker(Queue(sys.argv[1]), concurrency=2, fallback_interval=30.0).run()
"""
_names = itertools.count()


@contextmanager
def ear(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of the test's own that LISTENs on the queue's channel."""
    loc = parse(url)
    with psycopg.connect(loc.conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {channel(loc.queue)}")
        yield conn


def heard(conn: psycopg.Connection[Any], seconds: float) -> int:
    """How many notifications arrive within ``seconds``."""
    return sum(1 for _ in conn.notifies(timeout=seconds))


def listeners(url: str, app: str) -> list[int]:
    """Backend pids of the sessions named ``app`` whose last statement was a LISTEN."""
    with psycopg.connect(parse(url).conninfo, autocommit=True) as conn:
        return [pid for pid, in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND query LIKE 'LISTEN %%'", (app,))]


def start_worker(children: Children, url: str) -> tuple[str, str]:
    """A worker of two children in another process; its URL and application name."""
    app = f"wake{os.getpid()}-{next(_names)}"  # unique on the server: other test processes
    url = f"{url}&application_name={app}"
    children.start(WORKER, url)
    return url, app


def run_one(q: Queue, timeout: float = 20) -> None:
    """Enqueue a job and see it done, well before the workers' 30 s fallback look."""
    job_id = q.enqueue(jobtasks.add, 1, 2)
    assert q.wait(job_id, timeout=timeout).status is Status.SUCCEEDED


def test_an_idle_worker_is_woken_by_a_job_that_another_process_enqueues(
        pg_url: str, children: Children) -> None:
    url, app = start_worker(children, pg_url)
    with Queue(pg_url) as q:
        run_one(q, timeout=60)  # the worker is up, and its children go idle after this job
        assert len(wait_until(lambda: listeners(url, app))) == 1  # one LISTEN, not one a child
        time.sleep(0.5)  # the children are in their idle wait of up to 30 s
        run_one(q)


def test_poll_only_mode_neither_listens_nor_notifies_and_still_runs_jobs(
        pg_url: str, children: Children) -> None:
    url, app = start_worker(children, f"{pg_url}&wakeups=poll")
    with ear(url) as conn, Queue(url) as q:
        run_one(q, timeout=60)
        time.sleep(0.5)
        run_one(q)  # found by the children's poll every poll_interval: nothing woke them
        assert heard(conn, 0.3) == 0
    assert listeners(url, app) == []


def test_an_idle_child_waits_until_the_fallback_or_the_next_due_job(engine: PgEngine,
                                                                    pg_url: str) -> None:
    assert not engine.has_ready()
    assert engine.idle_wait(0.02, 30.0) == 30.0
    engine.append(frames(["soon"], delay=5))
    assert not engine.has_ready()
    assert 0.02 <= engine.idle_wait(0.02, 30.0) <= 5.0  # woken when it is due, not 25 s late
    polled = open_url(f"{pg_url}&wakeups=poll")
    try:
        assert not polled.has_ready()
        assert polled.idle_wait(0.02, 30.0) == 0.02  # nothing would wake it: poll
    finally:
        polled.close()


def test_a_batch_sends_one_notify(engine: PgEngine, pg_url: str) -> None:
    with ear(pg_url) as conn:
        engine.append(frames([f"j{i}" for i in range(500)]))
        engine.append(frames(["late"], delay=60))  # due later: notified too (sets idle waits)
        assert heard(conn, 1.0) == 2


def test_a_burst_of_single_enqueues_notifies_about_once_a_window(pg_url: str) -> None:
    with ear(pg_url) as conn, Queue(pg_url) as q:
        started = time.monotonic()
        for i in range(40):
            q.enqueue(jobtasks.add, i, i)
        windows = (time.monotonic() - started) / DEBOUNCE
        count = heard(conn, 1.0)
    assert 2 <= count <= windows + 2 and count < 40  # the first, one a window, the trailing one


def test_jobs_made_ready_within_the_window_get_one_trailing_notify(pg_url: str) -> None:
    loc = parse(pg_url)
    db = Db(loc)
    notifier = Notifier(db, loc.queue, window=1.0)
    try:
        with ear(pg_url) as conn:
            for _ in range(10):
                notifier.jobs_ready()
            # The first at once, then nothing until the window ends, then one for the other 9
            # (no trailing one: 1; no debouncing: 10).
            assert heard(conn, 3.0) == 2
    finally:
        db.close()


def test_a_worker_whose_listen_connection_is_killed_listens_again_and_runs_jobs(
        pg_url: str, children: Children) -> None:
    url, app = start_worker(children, pg_url)
    with Queue(pg_url) as q, psycopg.connect(parse(pg_url).conninfo, autocommit=True) as admin:
        run_one(q, timeout=60)
        [killed] = wait_until(lambda: listeners(url, app))
        admin.execute("SELECT pg_terminate_backend(%s)", (killed,))
        run_one(q)  # its NOTIFY is lost, or heard: the listener wakes the children once back
        [again] = wait_until(lambda: listeners(url, app))
        assert again != killed
        time.sleep(0.5)
        run_one(q)
    assert all(p.poll() is None for p in children.procs)  # the worker never stopped


def test_a_pending_trailing_notify_is_sent_before_a_fork_and_its_thread_ended(
        pg_url: str) -> None:
    """A thread alive at a fork may hold a lock that the child then waits for forever (and
    Python 3.12 warns of it, an error in this suite); the child notifies on its own."""
    import os
    import threading

    loc = parse(pg_url)
    db = Db(loc)
    notifier = Notifier(db, loc.queue, window=5.0)
    try:
        with ear(pg_url) as conn:
            notifier.jobs_ready()
            notifier.jobs_ready()  # the trailing one: due in 5 s
            assert heard(conn, 0.3) == 1
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    notifier.jobs_ready()  # the child's first: at once
                    db.close()
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert not [t for t in threading.enumerate() if t.name == "jobq-notify"]
            assert heard(conn, 1.0) == 2  # the trailing one, before the fork; the child's
    finally:
        db.close()


def test_a_cancel_of_a_running_job_is_heard_as_a_cancel_not_as_new_jobs(
        engine: PgEngine, pg_url: str) -> None:
    """The supervisor's listener tells cancels apart from new jobs; a waiting job's cancel, and
    any cancel in poll-only mode, sends nothing."""
    from jobq._logging import get_logger
    from jobq.postgres.wakeups import Listener

    engine.append(frames(["running", "waiting"]))
    _, claims = engine.settle([], "w/1", 1)
    assert [c.job_id for c in claims] == ["running"]
    listener = Listener(parse(pg_url), get_logger(__name__))
    try:
        assert listener.cancels()  # once at the start: one may have come before it listened
        assert not listener.cancels()
        with ear(pg_url) as conn:
            assert engine.cancel("waiting") and heard(conn, 0.3) == 0
            assert engine.cancel("running")
            assert [n.payload for n in conn.notifies(timeout=1.0)] == ["cancel"]
        wait_until(lambda: (listener.heard(), listener.cancels())[1], timeout=10)
        assert not listener.heard() and not listener.cancels()
    finally:
        listener.close()
    polled = open_url(f"{pg_url}&wakeups=poll")
    try:
        polled.append(frames(["quiet"]))
        polled.settle([], "w/2", 1)
        with ear(pg_url) as conn:
            assert polled.cancel("quiet") and heard(conn, 0.3) == 0
    finally:
        polled.close()


def test_a_settle_that_releases_dependents_notifies_and_one_that_does_not_is_quiet(
        pg_url: str) -> None:
    """Idle workers hear of jobs a settle made due: its own claim takes at most what it asked
    for, and no enqueue would wake the others."""
    with Queue(pg_url) as q:
        engine = q.engine
        q.enqueue_call(jobtasks.add, (1, 2), job_id="parent")
        q.enqueue_call(jobtasks.add, (3, 4), job_id="lone")
        for n in range(3):
            q.enqueue_call(jobtasks.add, (n, n), job_id=f"child{n}", depends_on=["parent"])
        with ear(pg_url) as conn:
            heard(conn, 0.3)  # the enqueues' own, if still to come
            _, claims = engine.settle([], "w1", 2)
            tokens = {c.job_id: c.token for c in claims}
            assert set(tokens) == {"parent", "lone"}
            engine.settle([("lone", tokens["lone"], succeed(7))], "w1", 0)
            assert heard(conn, 0.5) == 0  # nothing released: no NOTIFY
            engine.settle([("parent", tokens["parent"], succeed(3))], "w1", 0)
            assert heard(conn, 1.0) == 1  # its three dependents, in one (debounced) NOTIFY
        assert {q.state(f"child{n}").status for n in range(3)} == {Status.QUEUED}
