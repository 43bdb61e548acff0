"""How a worker stops, on every engine: SIGTERM and SIGINT, the shutdown grace, a job given
back when its worker stops, and a stop that lands while the worker is writing an event.

Every worker here is a real process: ``jobq worker`` (the ``workers`` fixture) or a script running
it (the ``children`` fixture). Signals are real signals.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import termios
import time
from typing import Any

import pytest
from conftest import wait_until
from test_worker_shutdown import LINUX_ONLY, _for_job, _when

from jobq import Queue, Status

# ``jobq worker`` whose events go to a pipe the test does not read until it chooses to.
PIPED_WORKER = """
import sys
from jobq.cli import main
sys.exit(main(["--log-format", "json", "--log-level", "debug", "worker", "--dir", sys.argv[1]]))
"""


def _pipe_fullness(pipe: Any) -> float:
    """How full ``pipe`` is: bytes written and not read yet, over its capacity."""
    unread = int.from_bytes(fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4), sys.byteorder)
    return unread / fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ)


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_more(
        q: Queue, location: str, workers, tmp_path):
    """After SIGTERM a job that ends within the grace succeeds, nothing new is claimed, exit 0."""
    started = tmp_path / "started"
    running = q.enqueue("jobtasks:mark_then_sleep", str(started), 1.0)
    w = workers(location, "--shutdown-grace", "10", "-c", "2")
    # Its task has begun: a job whose status is running may only be claimed, and a claim not
    # started when the stop comes is given back unstarted (the test below).
    wait_until(started.exists)

    os.kill(w.pid, signal.SIGTERM)
    wait_until(lambda: w.events("worker.stopping"))
    later = q.enqueue("jobtasks:add", 1, 2)  # a child is idle: only the stop keeps it queued

    assert w.wait(timeout=15) == 0
    assert q.state(running).status is Status.SUCCEEDED
    assert q.state(running).result == "first"  # run once, to its end
    assert q.state(later).status is Status.QUEUED
    assert q.state(later).attempts == 0
    assert w.events("worker.stopped")


def test_a_claim_the_child_was_told_to_stop_before_starting_is_given_back_uncharged(
        q: Queue, tmp_path):
    """The stop lands between a child's claim and the start of its first job (the race behind
    the test above, under load): the job is not run, and goes back queued with no attempt
    charged. The child's own loop, in this process, on a real queue."""
    from jobq._logging import get_logger
    from workers.board import Board
    from workers.child import Runner
    from workers.config import WorkerConfig
    from workers.forked import pipe

    ran = tmp_path / "ran"
    jid = q.enqueue("jobtasks:note_run", str(ran), "ran")
    board, (ours, theirs) = Board(), pipe()
    runner = Runner(theirs, q, board, "w-1-x/1", WorkerConfig(), get_logger("test"))
    try:
        claims = runner._settle(1)
        assert [c.job_id for c in claims] == [jid]
        board.request_stop()  # the supervisor's SIGTERM, just after the claim committed
        runner._run_batch(claims)
        runner.loop()  # records what the batch gave back, then returns: told to stop
    finally:
        runner.close()
        board.close()
        ours.close()
        theirs.close()
    assert not ran.exists()
    state = q.state(jid)
    assert (state.status, state.attempts, state.errors) == (Status.QUEUED, 0, [])


def test_job_longer_than_the_grace_is_released_and_resumed_by_another_worker(
        q: Queue, location: str, workers, tmp_path):
    """After the grace a running job is given back uncharged, and another worker resumes it."""
    # Up to 10 s before the release: outlasts the grace; resumed, it runs on without waits.
    jid = q.enqueue("jobtasks:sum_steps", 100, 0.1, str(tmp_path / "pid"), 0.0)
    first = workers(location, "--shutdown-grace", "1")
    wait_until(lambda: q.state(jid).checkpoint)  # a step is done and checkpointed
    second = workers(location)
    wait_until(lambda: second.events("worker.started"))

    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=15) == 0

    released = _for_job(first.events("job.released"), jid)
    assert [(e["status"], e["attempt"]) for e in released] == [("queued", 0)]
    assert not _for_job(first.events("job.failed"), jid)
    state = q.wait(jid, timeout=30)
    assert state.status is Status.SUCCEEDED
    assert state.result["resumed_from"] > 0  # its checkpoint was kept through the release
    assert state.result["attempt"] == 1  # the released attempt was not charged
    assert (state.attempts, state.crashes, state.errors) == (1, 0, [])
    claimed = _for_job(second.events("job.claimed"), jid)
    assert len(claimed) == 1
    # Released at once, not left for a reaper: the waiting worker had it within 2 s.
    assert _when(claimed[0]) - _when(released[0]) < 2


def test_second_signal_stops_at_once_and_releases_the_job(q: Queue, location: str, workers):
    """SIGTERM then SIGINT stops the worker without waiting for its grace; the job is released."""
    jid = q.enqueue("jobtasks:sleep_for", 30)
    w = workers(location, "--shutdown-grace", "60")
    wait_until(lambda: q.state(jid).status is Status.RUNNING)

    os.kill(w.pid, signal.SIGTERM)
    wait_until(lambda: w.events("worker.stopping"))
    asked = time.monotonic()
    os.kill(w.pid, signal.SIGINT)

    assert w.wait(timeout=30) == 0
    assert time.monotonic() - asked < 10  # not the 60 s grace, nor the 30 s job
    assert [e["mode"] for e in w.events("worker.stopping")] == ["gracefully", "immediately"]
    state = q.state(jid)
    assert (state.status, state.attempts, state.errors) == (Status.QUEUED, 0, [])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_does_not_kill_a_running_job(q: Queue, location: str,
                                                                 workers, sig: signal.Signals):
    """Ctrl-C (SIGINT to the process group), or systemd's stop (SIGTERM to every process of the
    service), lets the running job finish: children do nothing on either."""
    jid = q.enqueue("jobtasks:sleep_for", 1.0)
    w = workers(location)
    wait_until(lambda: q.state(jid).status is Status.RUNNING)

    os.killpg(w.pid, sig)

    assert w.wait(timeout=30) == 0
    state = q.state(jid)
    assert (state.status, state.attempts, state.crashes) == (Status.SUCCEEDED, 1, 0)
    assert [e["reason"] for e in w.events("worker.stopping")] == [sig.name]
    assert not w.events("worker.child_died")


@LINUX_ONLY
def test_sigterm_while_logging_is_blocked_still_stops_the_worker(q: Queue, location: str, children):
    """A signal that lands while the worker is writing an event (stderr full) does not wedge it."""
    q.enqueue_many("jobtasks:add", [(i, i) for i in range(3000)])
    w = children.start(PIPED_WORKER, location)
    # Filling up (or the worker ended: then say why, not "not met"). A pipe is full when its 16
    # pages are taken, and a write that does not fit the last page's room starts a new one: with
    # the worker's events written a batch at a time, a full pipe may hold well under 90% of its
    # bytes (a run waited 30 s for 90% once). stalled() below tells that it is stuck.
    wait_until(lambda: _pipe_fullness(w.stderr) > 0.5 or w.poll() is not None)
    assert w.poll() is None, f"the worker exited {w.returncode}: {w.communicate()[1][-2000:]}"

    def stalled() -> bool:
        done = q.counts()["succeeded"]
        time.sleep(0.3)
        return q.counts()["succeeded"] == done

    wait_until(stalled)  # stuck in a write of an event, with jobs left to do

    os.kill(w.pid, signal.SIGTERM)  # interrupts that write: the handler runs inside it
    _, err = w.communicate(timeout=20)  # reading the pipe lets the write finish

    assert w.returncode == 0
    assert '"event": "worker.stopping"' in err
    assert '"event": "worker.stopped"' in err
    assert q.counts()["queued"] > 0  # it stopped instead of draining the queue


def test_sigterm_tells_a_long_job_to_stop_and_it_resumes_on_the_next_worker(
        q: Queue, location: str, workers, tmp_path):
    """A 60 s job that checks ctx.stopping after each save ends its attempt on SIGTERM: the worker
    exits well before its 30 s grace, and the job resumes, uncharged, where it stopped."""
    pid_file = tmp_path / "pid"
    jid = q.enqueue_call("jobtasks:sum_steps", args=(600, 0.1, str(pid_file), 0.0, True))
    first = workers(location)  # the default grace: 30 s
    wait_until(lambda: q.state(jid).checkpoint)

    asked = time.monotonic()
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    assert time.monotonic() - asked < 30  # it did not wait out the grace (nor the 60 s job)
    released = _for_job(first.events("job.released"), jid)
    assert [(e["status"], e["attempt"]) for e in released] == [("queued", 0)]
    assert "cause" not in released[0]  # the task gave it back itself: no kill at the deadline
    stopped_at = q.state(jid)
    assert (stopped_at.status, stopped_at.attempts, stopped_at.errors) == (Status.QUEUED, 0, [])

    second = workers(location)
    state = q.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED
    assert state.result == {"sum": 600 * 601 // 2, "resumed_from": stopped_at.checkpoint[0],
                            "attempt": 1}
    assert stopped_at.checkpoint[0] > 0
    assert (state.attempts, state.crashes, state.errors) == (1, 0, [])
    assert len(_for_job(second.events("job.claimed"), jid)) == 1

