"""How failing jobs end, on every engine: retries with backoff, timeouts, crashes, poison jobs,
bad tasks.

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

import jobtasks
from jobq import Queue, Status
from jobq.errors import JobFailed
from jobq.testing import run_burst
from structlog.testing import capture_logs
from workers import Worker

from jobtasks import add, kill_own_process

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


def test_a_failing_job_is_retried_then_dead_and_retry_brings_it_back(q: Queue, tmp_path):
    """q.retry re-queues a dead job with a fresh attempt budget, its history kept; other
    statuses return False."""
    flag = str(tmp_path / "fixed")
    jid = q.enqueue_call(jobtasks.fail_unless_exists, (flag,), max_attempts=2)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.DEAD, 2, 2)
    with pytest.raises(JobFailed, match="after 2 attempt"):
        q.result(jid)
    open(flag, "w").close()  # the cause is fixed: retry with a fresh budget, history kept
    assert q.retry(jid) is True
    state = q.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.QUEUED, 0, 2)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.attempts, len(state.errors)) == (Status.SUCCEEDED, 1, 2)
    assert q.result(jid) == "fixed" and q.retry(jid) is False  # succeeded jobs are not retried


def test_failures_retry_then_die_keeping_every_error(q: Queue):
    """A failing job is retried up to max_attempts, then dead with one error per attempt."""
    jid = q.enqueue_call(jobtasks.boom, args=("bad input",), max_attempts=3)
    assert run_burst(q) == 3
    state = q.state(jid)
    assert state.status is Status.DEAD and state.attempts == 3 and len(state.errors) == 3
    assert "ValueError: bad input" in state.error and "Traceback" in state.error
    with pytest.raises(JobFailed, match="ValueError: bad input") as info:
        q.result(jid)
    assert info.value.job_id == jid and "Traceback" in info.value.error


def test_failing_job_backs_off_between_attempts_then_is_dead_with_every_error(q: Queue, logged):
    """A job that always raises is retried after at least the backoff's lower bound, then dead."""
    jid = q.enqueue_call("jobtasks:boom", max_attempts=3)

    Worker(q, retry_base=0.2, retry_cap=5).run(burst=True)

    state = q.state(jid)
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
    assert q.retry(jid)
    assert q.state(jid).status is Status.QUEUED


def test_dead_job_retried_once_its_dependency_is_fixed_succeeds(q: Queue, tmp_path):
    """``q.retry`` gives a dead job a fresh budget; it succeeds once what it needed exists."""
    dependency = tmp_path / "dependency"
    jid = q.enqueue_call("jobtasks:fail_unless_exists", args=(str(dependency),),
                             max_attempts=2)
    Worker(q, retry_base=0.05).run(burst=True)
    assert q.state(jid).status is Status.DEAD

    assert q.retry(jid)
    requeued = q.state(jid)
    assert (requeued.status, requeued.attempts) == (Status.QUEUED, 0)
    dependency.touch()
    Worker(q, retry_base=0.05).run(burst=True)

    state = q.state(jid)
    assert state.status is Status.SUCCEEDED
    assert state.result == "fixed"
    assert state.attempts == 1
    assert len(state.errors) == 2  # the history of the dead run is kept
    assert all("FileNotFoundError" in error for error in state.errors)


def test_job_over_its_timeout_is_killed_retried_then_dead(q: Queue):
    """A job past its timeout has its child killed, the attempt fails, and the worker goes on."""
    slow = q.enqueue_call("jobtasks:sleep_for", args=(30,), timeout=0.5, max_attempts=2)
    after = q.enqueue("jobtasks:add", 2, 3)  # runs on the child that replaced a killed one

    started = time.monotonic()
    Worker(q, retry_base=0.05).run(burst=True)
    elapsed = time.monotonic() - started

    state = q.state(slow)
    assert state.status is Status.DEAD
    assert state.attempts == 2
    assert len(state.errors) == 2
    assert all("timed out after 0.5 s" in error for error in state.errors)
    assert elapsed < 20  # the 30 s sleeps were cut short
    assert q.state(after).status is Status.SUCCEEDED
    assert q.state(after).result == 5


def test_poison_job_is_set_aside_after_max_crashes_and_others_still_run(q: Queue):
    """A job that kills its process every time is dead after max_crashes, not max_attempts."""
    poison = q.enqueue_call("jobtasks:kill_own_process", max_attempts=10)
    normal = q.enqueue("jobtasks:add", 1, 2)

    Worker(q, max_crashes=3, retry_base=0.05).run(burst=True)

    state = q.state(poison)
    assert state.status is Status.DEAD
    assert state.attempts == 3
    assert state.crashes == 3
    assert "set aside after 3 crashed attempts" in state.error
    assert "SIGKILL" in state.error
    assert len(state.errors) == 3
    assert q.state(normal).status is Status.SUCCEEDED
    assert q.state(normal).result == 3


def test_task_that_no_longer_exists_is_dead_at_once_with_the_reason(q: Queue, monkeypatch):
    """A job whose function no longer exists where the worker runs goes to dead on its first
    try, no attempt spent: retrying cannot make the function appear."""
    jid = q.enqueue_call("jobtasks_extra:vanishing", max_attempts=3)
    monkeypatch.delattr(jobtasks_extra, "vanishing")  # the forked children see it gone

    Worker(q).run(burst=True)

    state = q.state(jid)
    assert state.status is Status.DEAD and state.attempts == 0 and len(state.errors) == 1
    assert "cannot run job" in state.error
    assert "has no attribute 'vanishing'" in state.error


def test_task_raising_permanent_failure_is_dead_after_one_attempt(q: Queue):
    """PermanentFailure from a task in a worker child ends the job without retries."""
    jid = q.enqueue_call("jobtasks:give_up", ["gone"], max_attempts=4)

    Worker(q, retry_base=0.01).run(burst=True)

    state = q.state(jid)
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
        q: Queue, location: str, workers, tmp_path):
    """A job SIGKILLed four times, each time after its attempt saved a checkpoint (max_attempts
    3, --max-crashes 3), resumes every time and succeeds with the whole sum, uncharged."""
    pid_file, fast = tmp_path / "pid", tmp_path / "fast"
    # Up to 6 s for the kills (steps of 20 ms), then the rest at once (the file ``fast``).
    jid = q.enqueue_call("jobtasks:sum_steps", args=(300, 0.02, str(pid_file)),
                         kwargs={"fast_once": str(fast)}, max_attempts=3)
    w = workers(location, "--max-crashes", "3")
    killed: set[int] = set()
    for _ in range(4):
        pid = wait_until(lambda: _saved_by_new_process(pid_file, killed))
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    fast.touch()

    state = q.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED, state.errors
    assert state.result["sum"] == 300 * 301 // 2
    assert state.result["resumed_from"] > 0
    assert (state.attempts, state.crashes) == (1, 0)
    assert len(state.errors) == 4
    assert all("after saving a checkpoint (not charged)" in e and "SIGKILL" in e
               for e in state.errors)
    assert len(w.events("job.failed")) == 4


def test_worker_killed_after_a_save_is_reaped_without_charging_the_attempt(
        q: Queue, location: str, workers, tmp_path):
    """A whole worker SIGKILLed after its job saved: the worker that reaps it charges nothing."""
    pid_file = tmp_path / "pid"
    # 2 s at most before the kill; once resumed, no waits.
    jid = q.enqueue_call("jobtasks:sum_steps", args=(100, 0.02, str(pid_file), 0.0),
                         max_attempts=1)
    first = workers(location)
    wait_until(lambda: _saved_by_new_process(pid_file, set()))
    # Its child may claim and save before the supervisor logs that it started (named below).
    wait_until(lambda: first.events("worker.started"))
    first.kill_all()
    second = workers(location)

    state = q.wait(jid, timeout=60)
    assert state.status is Status.SUCCEEDED, state.errors
    assert state.result["sum"] == 100 * 101 // 2
    assert state.result["resumed_from"] > 0
    assert (state.attempts, state.crashes) == (1, 0)
    reaped = [e for e in second.events("job.failed") if e["job_id"] == jid]
    assert [e.get("reaped_from") for e in reaped] == [first.events("worker.started")[0]["worker"]]


def test_poison_job_that_saves_the_same_checkpoint_before_dying_is_still_set_aside(q: Queue):
    """Saving what an earlier attempt saved is no progress: the crash cap still applies."""
    jid = q.enqueue_call("jobtasks:save_then_die", max_attempts=10)

    Worker(q, max_crashes=3, retry_base=0.05).run(burst=True)

    state = q.state(jid)
    assert state.status is Status.DEAD
    assert state.crashes == 3
    assert "set aside after 3 crashed attempts" in state.error
    # The first attempt saved a new checkpoint ("start"), so it was free; the next three not.
    assert len(state.errors) == 4
    assert "not charged" in state.errors[0]
    assert state.attempts == 3


def test_prefetched_jobs_behind_a_crashing_one_run_once_and_are_not_charged(q: Queue):
    """A child that dies holds prefetched claims: only the job it was running is charged."""
    before = q.enqueue_many(add, [(i, 1) for i in range(5)])  # teach it the jobs are short
    crasher = q.enqueue_call(kill_own_process, max_attempts=5)
    after = q.enqueue_many(add, [(i, 2) for i in range(40)])
    with capture_logs() as events:
        Worker(q, concurrency=1, max_crashes=2).run(burst=True)
    given_back = [e for e in events if e["event"] == "job.released"]
    assert given_back and all("not started" in e["cause"] for e in given_back)  # it prefetched
    crashed = q.state(crasher)
    assert (crashed.status, crashed.crashes) == (Status.DEAD, 2)
    for job_id in before + after:
        state = q.state(job_id)
        assert (state.status, state.attempts, state.crashes, state.errors) == \
            (Status.SUCCEEDED, 1, 0, []), job_id


def test_a_dead_workers_unstarted_claims_are_given_back_uncharged(q: Queue):
    """Another worker reaps a dead one: started claims count a crashed attempt, prefetched ones
    go back to the queue as if never claimed."""
    ids = q.enqueue_many(add, [(i, 3) for i in range(4)])
    _, claims = q.engine.settle([], "w-that-died", 1, prefetch=3)
    q.engine.settle([], "w-that-died", 0, started=[(claims[1].job_id, claims[1].token)])
    Worker(q).run(burst=True)
    states = [q.state(j) for j in ids]
    assert all(s.status is Status.SUCCEEDED for s in states)
    assert [(s.attempts, s.crashes) for s in states] == [(2, 1), (2, 1), (1, 0), (1, 0)]
