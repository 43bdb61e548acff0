"""How a worker stops: SIGTERM and SIGINT, the shutdown grace, and a stuck worker's expired lease.

Every worker here is a real process: ``jobq worker`` (the ``workers`` fixture) or a script running
``Worker(...).run()`` (the ``children`` fixture). Signals are real signals.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import termios
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from jobq.state import Status

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and Linux pipe sizes")

# A worker whose lease is short: stopped with SIGSTOP, it stops renewing and the lease runs out.
# Its events go to a file as JSON lines (argv[2]), so the test can read them while it runs.
SHORT_LEASE_WORKER = """
import sys
sys.stderr = open(sys.argv[2], "a", buffering=1)
from jobq import Queue
from jobq.cli import configure_logging
from workers import Worker
configure_logging(fmt="json", level=10)  # debug: claims too
with Queue(sys.argv[1]) as q:
    Worker(q, lease_seconds=1, reap_interval=0.1).run()
"""

# ``jobq worker`` whose events go to a pipe the test does not read until it chooses to.
PIPED_WORKER = """
import sys
from jobq.cli import main
sys.exit(main(["--log-format", "json", "--log-level", "debug", "worker", "--dir", sys.argv[1]]))
"""


def _events(path: Path, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [e for e in events
            if e["event"] == name and (job_id is None or e.get("job_id") == job_id)]


def _for_job(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("job_id") == job_id]


def _when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _pipe_fullness(pipe: Any) -> float:
    """How full ``pipe`` is: bytes written and not read yet, over its capacity."""
    unread = int.from_bytes(fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4), sys.byteorder)
    return unread / fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ)


def _process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``T`` once it is stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_more(queue, qpath, workers):
    """After SIGTERM a job that ends within the grace succeeds, nothing new is claimed, exit 0."""
    running = queue.enqueue("jobtasks:sleep_for", 1.0)
    w = workers(str(qpath), "--shutdown-grace", "10", "-c", "2")
    wait_until(lambda: queue.state(running).status is Status.RUNNING)

    os.kill(w.pid, signal.SIGTERM)
    wait_until(lambda: w.events("worker.stopping"))
    later = queue.enqueue("jobtasks:add", 1, 2)  # a child is idle: only the stop keeps it queued

    assert w.wait(timeout=15) == 0
    assert queue.state(running).status is Status.SUCCEEDED
    assert queue.state(running).result == 1.0
    assert queue.state(later).status is Status.QUEUED
    assert queue.state(later).attempts == 0
    assert w.events("worker.stopped")


def test_job_longer_than_the_grace_is_released_and_resumed_by_another_worker(
        queue, qpath, workers, tmp_path):
    """After the grace a running job is given back uncharged, and another worker resumes it."""
    markers = tmp_path / "markers"
    markers.mkdir()
    jid = queue.enqueue("jobtasks:slow_steps", 50, 0.2, str(markers))
    first = workers(str(qpath), "--shutdown-grace", "1")
    wait_until(lambda: queue.state(jid).checkpoint)  # a step is done and checkpointed
    second = workers(str(qpath))
    wait_until(lambda: second.events("worker.started"))

    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=15) == 0

    released = _for_job(first.events("job.released"), jid)
    assert [(e["status"], e["attempt"]) for e in released] == [("queued", 0)]
    assert not _for_job(first.events("job.failed"), jid)
    state = queue.wait(jid, timeout=30)
    assert state.status is Status.SUCCEEDED
    assert state.result["resumed_from"] > 0  # its checkpoint was kept through the release
    assert state.result["attempt"] == 1  # the released attempt was not charged
    assert (state.attempts, state.crashes, state.errors) == (1, 0, [])
    claimed = _for_job(second.events("job.claimed"), jid)
    assert len(claimed) == 1
    # Released at once, not left for a reaper: the waiting worker had it within 2 s.
    assert _when(claimed[0]) - _when(released[0]) < 2


def test_second_signal_stops_at_once_and_releases_the_job(queue, qpath, workers):
    """SIGTERM then SIGINT stops the worker without waiting for its grace; the job is released."""
    jid = queue.enqueue("jobtasks:sleep_for", 30)
    w = workers(str(qpath), "--shutdown-grace", "60")
    wait_until(lambda: queue.state(jid).status is Status.RUNNING)

    os.kill(w.pid, signal.SIGTERM)
    wait_until(lambda: w.events("worker.stopping"))
    asked = time.monotonic()
    os.kill(w.pid, signal.SIGINT)

    assert w.wait(timeout=30) == 0
    assert time.monotonic() - asked < 10  # not the 60 s grace, nor the 30 s job
    assert [e["mode"] for e in w.events("worker.stopping")] == ["gracefully", "immediately"]
    state = queue.state(jid)
    assert (state.status, state.attempts, state.errors) == (Status.QUEUED, 0, [])


def test_ctrl_c_to_the_process_group_does_not_kill_a_running_job(queue, qpath, workers):
    """Ctrl-C (SIGINT to the process group) lets the running job finish: children ignore it."""
    jid = queue.enqueue("jobtasks:sleep_for", 1.0)
    w = workers(str(qpath))
    wait_until(lambda: queue.state(jid).status is Status.RUNNING)

    os.killpg(w.pid, signal.SIGINT)

    assert w.wait(timeout=30) == 0
    state = queue.state(jid)
    assert (state.status, state.attempts, state.crashes) == (Status.SUCCEEDED, 1, 0)
    assert [e["reason"] for e in w.events("worker.stopping")] == ["SIGINT"]
    assert not w.events("worker.child_died")


@LINUX_ONLY
def test_stuck_worker_loses_its_job_at_lease_expiry_and_its_late_result_is_refused(
        queue, qpath, workers, children, tmp_path):
    """A stopped worker's job is reclaimed when its lease expires; its late result is stale."""
    pid_file, a_log = tmp_path / "pid", tmp_path / "worker-a.log"
    jid = queue.enqueue_call("jobtasks:pid_then_sleep", args=(str(pid_file), 3.0), max_attempts=3)
    a = children.start(SHORT_LEASE_WORKER, str(qpath), str(a_log))
    wait_until(lambda: pid_file.exists())
    a_child = int(pid_file.read_text())
    a_id = _events(a_log, "worker.started")[0]["worker"]

    # Stop A's supervisor (not its child) outside any write transaction: holding the state lock
    # while it stops, A cannot be frozen with the lock in hand, which would wedge every worker.
    lock = queue.store._db.lock
    with lock:
        os.kill(a.pid, signal.SIGSTOP)
        wait_until(lambda: _process_state(a.pid) == "T")
    try:
        b = workers(str(qpath))
        state = queue.wait(jid, timeout=30)
        assert state.status is Status.SUCCEEDED
        assert state.result == int(pid_file.read_text()) != a_child  # B's own child ran it
    finally:
        os.kill(a.pid, signal.SIGCONT)

    reclaimed = _for_job(b.events("job.failed"), jid)
    assert [e["reaped_from"] for e in reclaimed] == [a_id]
    assert reclaimed[0]["cause"] == f"lease expired: worker {a_id} stopped renewing it"
    wait_until(lambda: _events(a_log, "job.stale_result", jid))
    a.send_signal(signal.SIGTERM)
    _, err = a.communicate(timeout=30)
    assert a.returncode == 0, err

    after = queue.state(jid)
    # The reclaimed attempt had saved a checkpoint before A stopped: it was not charged.
    assert (after.status, after.result, after.attempts) == (state.status, state.result, 1)
    succeeded = _events(a_log, "job.succeeded", jid) + _for_job(b.events("job.succeeded"), jid)
    assert len(succeeded) == 1


@LINUX_ONLY
def test_sigterm_while_logging_is_blocked_still_stops_the_worker(queue, qpath, children):
    """A signal that lands while the worker is writing an event (stderr full) does not wedge it."""
    queue.enqueue_many("jobtasks:add", [(i, i) for i in range(3000)])
    w = children.start(PIPED_WORKER, str(qpath))
    wait_until(lambda: _pipe_fullness(w.stderr) > 0.9)  # no room left for another event

    def stalled() -> bool:
        done = queue.counts()["succeeded"]
        time.sleep(0.3)
        return queue.counts()["succeeded"] == done

    wait_until(stalled)  # stuck in a write of an event, with jobs left to do

    os.kill(w.pid, signal.SIGTERM)  # interrupts that write: the handler runs inside it
    _, err = w.communicate(timeout=20)  # reading the pipe lets the write finish

    assert w.returncode == 0
    assert '"event": "worker.stopping"' in err
    assert '"event": "worker.stopped"' in err
    assert queue.counts()["queued"] > 0  # it stopped instead of draining the queue


def test_sigterm_tells_a_long_job_to_stop_and_it_resumes_on_the_next_worker(
        queue, qpath, workers, tmp_path):
    """A 60 s job that checks ctx.stopping after each save ends its attempt on SIGTERM: the worker
    exits well before its 30 s grace, and the job resumes, uncharged, where it stopped."""
    pid_file = tmp_path / "pid"
    jid = queue.enqueue_call("jobtasks:sum_steps", args=(600, 0.1, str(pid_file), 0.0, True))
    first = workers(str(qpath))  # the default grace: 30 s
    wait_until(lambda: queue.state(jid).checkpoint)

    asked = time.monotonic()
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    assert time.monotonic() - asked < 30  # it did not wait out the grace (nor the 60 s job)
    released = _for_job(first.events("job.released"), jid)
    assert [(e["status"], e["attempt"]) for e in released] == [("queued", 0)]
    assert "cause" not in released[0]  # the task gave it back itself: no kill at the deadline
    stopped_at = queue.state(jid)
    assert (stopped_at.status, stopped_at.attempts, stopped_at.errors) == (Status.QUEUED, 0, [])

    second = workers(str(qpath))
    state = queue.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED
    assert state.result == {"sum": 600 * 601 // 2, "resumed_from": stopped_at.checkpoint[0],
                            "attempt": 1}
    assert stopped_at.checkpoint[0] > 0
    assert (state.attempts, state.crashes, state.errors) == (1, 0, [])
    assert len(_for_job(second.events("job.claimed"), jid)) == 1
