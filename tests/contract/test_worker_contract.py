"""What the workers promise, on every engine: each job runs, once, in real worker processes, and
a worker killed mid-job hands its job to a live one, which resumes it from its checkpoint."""

from __future__ import annotations

import os
import signal
import time

import jobtasks
from jobq import Queue, Status
from workers import Worker


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _step(pid_path: str) -> int:
    """The last step the job saved (it writes ``<pid> <step>`` after each save)."""
    try:
        with open(pid_path) as f:
            return int(f.read().split()[1])
    except FileNotFoundError:
        return 0


def test_a_burst_worker_with_two_children_runs_every_job_once(q: Queue, tmp_path):
    log = str(tmp_path / "ran")
    ids = [q.enqueue(jobtasks.note_run, log, i) for i in range(300)]
    assert Worker(q, concurrency=2).run(burst=True) == 300
    with open(log) as f:
        ran = sorted(int(tag) for tag in f.read().split())
    assert ran == list(range(300))  # each once
    assert q.counts()["succeeded"] == 300 and all(q.result(j) == i for i, j in enumerate(ids))


def test_a_killed_worker_s_job_resumes_on_a_live_worker_from_its_checkpoint(
        location: str, tmp_path, workers):
    pid_path = str(tmp_path / "pid")
    with Queue(location) as q:
        jid = q.enqueue(jobtasks.sum_steps, 40, 0.05, pid_path)
        doomed = workers(location, "--concurrency", "1")
        wait_until(lambda: _step(pid_path) >= 5, timeout=30)
        doomed.kill_all()  # supervisor and child at once
        saved = q.state(jid).checkpoint[0]
        assert q.state(jid).status is Status.RUNNING  # held by a worker that no longer lives
        killed_at = time.monotonic()
        survivor = workers(location, "--concurrency", "1")
        state = q.wait(jid, timeout=60)
        assert survivor.events("worker.found_dead") or survivor.events("job.claimed")
        assert state.status is Status.SUCCEEDED, state.error
        assert state.result["sum"] == sum(range(41))
        assert state.result["resumed_from"] >= saved  # never from before its last checkpoint
        assert time.monotonic() - killed_at < 30
        survivor.proc.send_signal(signal.SIGTERM)
        survivor.wait(30)
