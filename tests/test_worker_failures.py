"""How the worker runtime handles failing jobs: retries, timeouts, crashes, cancels, bad tasks.

Workers are real: ``Worker(...).run(burst=True)`` in this process forks real children, and
``jobq worker`` runs as a subprocess. Nothing here mocks time or the file system.
"""

from __future__ import annotations

import itertools
import os
import signal
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jobtasks_extra
import pytest
import structlog
from conftest import wait_until

from jobq.state import Status
from workers import Worker

# A worker with a short cancel grace, run in a process of its own: the CLI has no flag for it.
CANCEL_GRACE_WORKER = """
import sys
from jobq import Queue
from jobq.cli import configure_logging
from workers import Worker
configure_logging(fmt="json", level=10)  # debug: claims too
with Queue(sys.argv[1]) as q:
    Worker(q, cancel_grace=0.5).run(burst=True)
"""


def _stamp(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["t"] = time.monotonic()
    return event


class _Events:
    """Events written as JSON lines to a file, read back when iterated."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(_json_events(self.path.read_text()))


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[_Events]:
    """Events logged while the test runs, by this process and the worker children it forks (which
    log their own jobs), each stamped with ``time.monotonic()``."""
    saved = structlog.get_config()
    path = tmp_path / "events.jsonl"
    with open(path, "a", buffering=1) as out:  # line-buffered: each event one write
        structlog.configure(processors=[_stamp, structlog.processors.JSONRenderer()],
                            wrapper_class=structlog.make_filtering_bound_logger(0),
                            logger_factory=structlog.WriteLoggerFactory(out),
                            cache_logger_on_first_use=False)
        try:
            yield _Events(path)
        finally:
            structlog.configure(**saved)


def _json_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_failing_job_backs_off_between_attempts_then_is_dead_with_every_error(queue, logged):
    """A job that always raises is retried after at least the backoff's lower bound, then dead."""
    jid = queue.enqueue_call("jobtasks:boom", max_attempts=3)

    Worker(queue, retry_base=0.2, retry_cap=5).run(burst=True)

    state = queue.state(jid)
    assert state.status is Status.DEAD
    assert state.attempts == 3
    assert len(state.errors) == 3
    assert all("ValueError: boom" in error for error in state.errors)
    claims = [e for e in logged if e["event"] == "job.claimed" and e["job_id"] == jid]
    assert [e["attempt"] for e in claims] == [1, 2, 3]
    gaps = [later["t"] - earlier["t"] for earlier, later in itertools.pairwise(claims)]
    # Retry n waits base * 2**(n-1) with full jitter down to half of it: >= 0.1 s, then >= 0.2 s.
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2
    assert queue.retry(jid)
    assert queue.state(jid).status is Status.QUEUED


def test_dead_job_retried_once_its_dependency_is_fixed_succeeds(queue, tmp_path):
    """``q.retry`` gives a dead job a fresh budget; it succeeds once what it needed exists."""
    dependency = tmp_path / "dependency"
    jid = queue.enqueue_call("jobtasks:fail_unless_exists", args=(str(dependency),),
                             max_attempts=2)
    Worker(queue, retry_base=0.05).run(burst=True)
    assert queue.state(jid).status is Status.DEAD

    assert queue.retry(jid)
    requeued = queue.state(jid)
    assert (requeued.status, requeued.attempts) == (Status.QUEUED, 0)
    dependency.touch()
    Worker(queue, retry_base=0.05).run(burst=True)

    state = queue.state(jid)
    assert state.status is Status.SUCCEEDED
    assert state.result == "fixed"
    assert state.attempts == 1
    assert len(state.errors) == 2  # the history of the dead run is kept
    assert all("FileNotFoundError" in error for error in state.errors)


def test_job_over_its_timeout_is_killed_retried_then_dead(queue):
    """A job past its timeout has its child killed, the attempt fails, and the worker goes on."""
    slow = queue.enqueue_call("jobtasks:sleep_for", args=(30,), timeout=0.5, max_attempts=2)
    after = queue.enqueue("jobtasks:add", 2, 3)  # runs on the child that replaced a killed one

    started = time.monotonic()
    Worker(queue, retry_base=0.05).run(burst=True)
    elapsed = time.monotonic() - started

    state = queue.state(slow)
    assert state.status is Status.DEAD
    assert state.attempts == 2
    assert len(state.errors) == 2
    assert all("timed out after 0.5 s" in error for error in state.errors)
    assert elapsed < 20  # the 30 s sleeps were cut short
    assert queue.state(after).status is Status.SUCCEEDED
    assert queue.state(after).result == 5


def test_poison_job_is_set_aside_after_max_crashes_and_others_still_run(queue):
    """A job that kills its process every time is dead after max_crashes, not max_attempts."""
    poison = queue.enqueue_call("jobtasks:kill_own_process", max_attempts=10)
    normal = queue.enqueue("jobtasks:add", 1, 2)

    Worker(queue, max_crashes=3, retry_base=0.05).run(burst=True)

    state = queue.state(poison)
    assert state.status is Status.DEAD
    assert state.attempts == 3
    assert state.crashes == 3
    assert "set aside after 3 crashed attempts" in state.error
    assert "SIGKILL" in state.error
    assert len(state.errors) == 3
    assert queue.state(normal).status is Status.SUCCEEDED
    assert queue.state(normal).result == 3


def test_cancelled_queued_job_never_runs(queue, tmp_path):
    """A job cancelled while queued is never run by a worker and stays cancelled."""
    cancelled_marker, other_marker = tmp_path / "cancelled-ran", tmp_path / "other-ran"
    cancelled = queue.enqueue("jobtasks_extra:touch", str(cancelled_marker))
    other = queue.enqueue("jobtasks_extra:touch", str(other_marker))
    assert queue.cancel(cancelled)

    Worker(queue).run(burst=True)

    assert queue.state(other).status is Status.SUCCEEDED
    assert other_marker.exists()  # the worker did run, and ran what was not cancelled
    assert queue.state(cancelled).status is Status.CANCELLED
    assert queue.state(cancelled).attempts == 0
    assert not cancelled_marker.exists()


def test_running_job_that_checks_cancellation_stops_and_ends_cancelled(queue, qpath, workers):
    """A running job that polls ctx.cancelled stops soon after q.cancel and ends cancelled."""
    jid = queue.enqueue("jobtasks:stop_when_cancelled", 20)
    w = workers(str(qpath))
    wait_until(lambda: queue.state(jid).status is Status.RUNNING)

    asked = time.monotonic()
    assert queue.cancel(jid)
    state = queue.wait(jid, timeout=20)

    assert state.status is Status.CANCELLED
    assert time.monotonic() - asked < 10  # it stopped itself: no 20 s run, no kill after 10 s
    ended = wait_until(lambda: [e for e in w.events("job.cancelled") if e["job_id"] == jid])
    assert "cause" not in ended[0]  # recorded from its own outcome, not from a kill


def test_running_job_ignoring_cancellation_is_killed_after_the_grace(queue, qpath, children):
    """A running job that ignores q.cancel is killed after the cancel grace and ends cancelled."""
    jid = queue.enqueue("jobtasks:ignore_cancel", 30)
    worker = children.start(CANCEL_GRACE_WORKER, str(qpath))
    wait_until(lambda: queue.state(jid).status is Status.RUNNING)

    asked = time.monotonic()
    assert queue.cancel(jid)
    state = queue.wait(jid, timeout=25)

    assert state.status is Status.CANCELLED
    assert time.monotonic() - asked < 15  # not the task's 30 s
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    ended = [e for e in _json_events(err) if e["event"] == "job.cancelled"]
    assert [e["cause"] for e in ended] == ["cancelled and did not stop within the grace period"]
    # The job's own record says so too (jobq show prints it), not only the worker's log.
    assert state.error == ("killed: asked to cancel, it did not stop within the 0.5 s grace"
                           " period")


def test_task_that_no_longer_exists_is_dead_at_once_with_the_reason(queue, monkeypatch):
    """A job whose function no longer exists where the worker runs goes to dead on its first
    try, no attempt spent: retrying cannot make the function appear."""
    jid = queue.enqueue_call("jobtasks_extra:vanishing", max_attempts=3)
    monkeypatch.delattr(jobtasks_extra, "vanishing")  # the forked children see it gone

    Worker(queue).run(burst=True)

    state = queue.state(jid)
    assert state.status is Status.DEAD and state.attempts == 0 and len(state.errors) == 1
    assert "cannot run job" in state.error
    assert "has no attribute 'vanishing'" in state.error


def test_task_raising_permanent_failure_is_dead_after_one_attempt(queue):
    """PermanentFailure from a task in a worker child ends the job without retries."""
    jid = queue.enqueue_call("jobtasks:give_up", ["gone"], max_attempts=4)

    Worker(queue, retry_base=0.01).run(burst=True)

    state = queue.state(jid)
    assert state.status is Status.DEAD and state.attempts == 1
    assert "PermanentFailure: giving up: gone" in state.error



def _saved_by_new_process(pid_file: Path, killed: set[int]) -> int | None:
    """The pid of a process that saved a checkpoint and was not killed yet, once there is one."""
    try:
        pid, _ = map(int, pid_file.read_text().split())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid not in killed else None


def test_crashes_after_saving_a_checkpoint_use_up_neither_attempts_nor_the_crash_cap(
        queue, qpath, workers, tmp_path):
    """A job SIGKILLed four times, each time after its attempt saved a checkpoint (max_attempts
    3, --max-crashes 3), resumes every time and succeeds with the whole sum, uncharged."""
    pid_file = tmp_path / "pid"
    jid = queue.enqueue_call("jobtasks:sum_steps", args=(400, 0.02, str(pid_file)),
                             max_attempts=3)
    w = workers(str(qpath), "--max-crashes", "3")
    killed: set[int] = set()
    for _ in range(4):
        pid = wait_until(lambda: _saved_by_new_process(pid_file, killed))
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)

    state = queue.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED, state.errors
    assert state.result["sum"] == 400 * 401 // 2
    assert state.result["resumed_from"] > 0
    assert (state.attempts, state.crashes) == (1, 0)
    assert len(state.errors) == 4
    assert all("after saving a checkpoint (not charged)" in e and "SIGKILL" in e
               for e in state.errors)
    assert len(w.events("job.failed")) == 4


def test_worker_killed_after_a_save_is_reaped_without_charging_the_attempt(
        queue, qpath, workers, tmp_path):
    """A whole worker SIGKILLed after its job saved: the worker that reaps it charges nothing."""
    pid_file = tmp_path / "pid"
    jid = queue.enqueue_call("jobtasks:sum_steps", args=(100, 0.02, str(pid_file)),
                             max_attempts=1)
    first = workers(str(qpath))
    wait_until(lambda: _saved_by_new_process(pid_file, set()))
    first.kill_all()
    second = workers(str(qpath))

    state = queue.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED, state.errors
    assert state.result["sum"] == 100 * 101 // 2
    assert state.result["resumed_from"] > 0
    assert (state.attempts, state.crashes) == (1, 0)
    reaped = [e for e in second.events("job.failed") if e["job_id"] == jid]
    assert [e.get("reaped_from") for e in reaped] == [first.events("worker.started")[0]["worker"]]


def test_poison_job_that_saves_the_same_checkpoint_before_dying_is_still_set_aside(queue):
    """Saving what an earlier attempt saved is no progress: the crash cap still applies."""
    jid = queue.enqueue_call("jobtasks:save_then_die", max_attempts=10)

    Worker(queue, max_crashes=3, retry_base=0.05).run(burst=True)

    state = queue.state(jid)
    assert state.status is Status.DEAD
    assert state.crashes == 3
    assert "set aside after 3 crashed attempts" in state.error
    # The first attempt saved a new checkpoint ("start"), so it was free; the next three not.
    assert len(state.errors) == 4
    assert "not charged" in state.errors[0]
    assert state.attempts == 3
