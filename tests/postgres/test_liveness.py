"""Liveness by advisory lock, and the workers' records, with real processes."""

from __future__ import annotations

import os
import signal

import psycopg
import pytest

from conftest import Children, wait_until
from jobq.errors import LivenessLost
from jobq.postgres import PgEngine
from jobq.postgres.url import parse
from jobq.state import Status
from jobq.worker_info import WorkerState

from .pgq import open_url

# Seconds to wait for the server to see a dead session end: milliseconds when idle, but a
# loaded machine (two cores, four test runs) has been seen to take over a second.
DEAD_WITHIN = 30

HOLDER = """
import sys, time
from postgres.pgq import open_url
engine = open_url(sys.argv[1])
hold = engine.workers.hold(sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


def _hold_in_child(children: Children, url: str, worker: str) -> int:
    proc = children.start(HOLDER, url, worker)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read() if proc.stderr else line
    return proc.pid


def test_a_sigkilled_holder_is_dead_once_the_server_sees_its_session_end(
        engine: PgEngine, pg_url: str, children: Children) -> None:
    """The kernel closes the killed holder's socket; the server frees its lock when it sees
    that (milliseconds, on an idle machine: waited for up to DEAD_WITHIN under load)."""
    for n in range(3):
        worker = f"host-1-w{n}"
        pid = _hold_in_child(children, pg_url, worker)
        assert not engine.workers.is_dead(worker)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda w=worker: engine.workers.is_dead(w), timeout=DEAD_WITHIN)


def test_close_lets_go_and_a_worker_never_seen_is_dead(engine: PgEngine) -> None:
    hold = engine.workers.hold("w")
    conn = hold._conn  # noqa: SLF001 - the server's keepalives on the lock's own session
    assert conn.execute("SHOW tcp_keepalives_idle").fetchone()[0] == "5"
    assert conn.execute("SHOW tcp_keepalives_count").fetchone()[0] == "3"
    assert not engine.workers.is_dead("w")
    assert engine.workers.is_dead("other")
    hold.check()
    hold.close()
    assert engine.workers.is_dead("w")


def test_holds_are_per_queue(engine: PgEngine, pg_url: str) -> None:
    other = open_url(pg_url.split("?")[0] + "?queue=liveness-other")
    hold = engine.workers.hold("w")
    try:
        assert other.workers.is_dead("w") and not engine.workers.is_dead("w")
    finally:
        hold.close()
        other.close()


def test_check_raises_once_the_lock_session_is_gone(engine: PgEngine, pg_url: str) -> None:
    hold = engine.workers.hold("w")
    (fd,) = hold.fds_to_close_after_fork()
    with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND pid <> pg_backend_pid() AND database = (SELECT oid FROM"
            " pg_database WHERE datname = current_database()) AND objsubid = 1").fetchall()
    assert killed
    with pytest.raises(LivenessLost, match="other workers take this one for dead"):
        hold.check()
    # pg_terminate_backend returns once signalled: the lock goes when the backend has exited.
    wait_until(lambda: engine.workers.is_dead("w"), timeout=DEAD_WITHIN)
    assert fd >= 0
    hold.close()


def test_a_forked_child_closing_the_fd_leaves_the_parent_alive(engine: PgEngine) -> None:
    hold = engine.workers.hold("w")
    fds = hold.fds_to_close_after_fork()
    pid = os.fork()
    if pid == 0:  # the child: what a worker child does, then exits (collecting its objects)
        code = 0
        try:
            for fd in fds:
                os.close(fd)
            child = engine.reopen(catch_up=False)
            child.counts()
            child.close()
            hold.close()  # in a child: must not end the parent's session
            engine.close()
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    hold.check()
    assert not engine.workers.is_dead("w")
    assert engine.counts()["queued"] == 0  # the parent's own connection still works
    hold.close()
    assert engine.workers.is_dead("w")


def test_worker_records(engine: PgEngine) -> None:
    workers = engine.workers
    now = engine.now()
    hold = workers.hold("host-7-aaa")
    workers.publish({"id": "host-7-aaa", "host": "host", "pid": 7, "started": now,
                     "heartbeat": now, "heartbeat_interval": 1.0, "concurrency": 2,
                     "children": [{"n": 1, "pid": 8, "job_id": None, "since": None}]})
    workers.publish({"id": "host-9-bbb", "host": "host", "pid": 9, "started": now - 5,
                     "heartbeat": now - 5})
    assert workers.recorded() == ["host-7-aaa", "host-9-bbb"]
    found = {w.id: w for w in workers.read(now, owners=["host-3-ccc/1"])}
    assert found["host-7-aaa"].state is WorkerState.LIVE and found["host-7-aaa"].concurrency == 2
    assert found["host-9-bbb"].state is WorkerState.DEAD
    assert found["host-3-ccc"].state is WorkerState.DEAD and found["host-3-ccc"].pid == 3
    assert workers.read(now + 60)[0].state is WorkerState.STUCK
    assert workers.bury("host-9-bbb", by="host-7-aaa", jobs=["j2", "j1"], now=now) is True
    assert workers.bury("host-9-bbb", by="someone", jobs=[], now=now) is False
    assert workers.recorded() == ["host-7-aaa"]
    reaped = workers.read(now)[-1]
    assert (reaped.id, reaped.state, reaped.reaped_by, reaped.held) == (
        "host-9-bbb", WorkerState.REAPED, "host-7-aaa", ("j1", "j2"))
    workers.withdraw("host-7-aaa")
    hold.close()
    assert workers.recorded() == []


CLAIMER = """
import sys, time
from postgres.pgq import open_url
engine = open_url(sys.argv[1])
hold = engine.workers.hold("host-5-dead")
claims = engine.settle([], "host-5-dead/1", 2, prefetch=1)[1]
print(" ".join(f"{c.job_id}:{c.token}" for c in claims), flush=True)
time.sleep(600)
"""


def test_a_killed_workers_jobs_are_reclaimed_and_its_late_results_refused(
        engine: PgEngine, pg_url: str, children: Children) -> None:
    from jobq import transitions

    from .pgq import frames
    engine.append(frames(["a", "b", "c"]))
    proc = children.start(CLAIMER, pg_url)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert len(line) == 3, proc.stderr.read() if proc.stderr else line
    old = dict(item.split(":") for item in line)
    os.kill(proc.pid, signal.SIGKILL)
    wait_until(lambda: engine.workers.is_dead("host-5-dead"), timeout=DEAD_WITHIN)
    # What a live worker's reaper does: crash the started claims, release the prefetched one.
    reaped = []
    for held in engine.held():
        if held.owner.split("/")[0] == "host-5-dead":
            change = (lambda s, now, m, t=held.token: transitions.interrupted(
                s, "worker died", now, max_attempts=m, max_crashes=3, token=t)) \
                if held.started else (lambda s, now, m: transitions.released(s, now))
            reaped.append((held.job_id, held.token, change))
    states, claims = engine.settle(reaped, "host-6-live/1", 3)
    assert sorted(s.status.value for s in states if s) == ["failed", "failed", "queued"]
    assert sorted(c.job_id for c in claims) == ["a", "b", "c"]
    released = [c for c in claims if c.state.attempts == 1]  # the prefetched one: uncharged
    assert len(released) == 1 and released[0].job_id == "c"
    late = engine.settle([(job_id, int(token), lambda s, now, m: transitions.succeeded(
        s, "late", now)) for job_id, token in old.items()], "host-5-dead/1", 0)[0]
    assert late == [None, None, None]  # the dead worker's results: refused by the token
    assert all(engine.status(j) is Status.RUNNING for j in "abc")
