"""Cancelling, on every engine: a waiting job never runs, a running one is asked to stop and is
killed after the grace if it does not, a finished one is left alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import wait_until

import jobtasks
from jobq import Queue, Status
from jobq.errors import JobCancelled
from jobq.execution import run_claim
from jobq.testing import run_burst
from workers import Worker, child

from jobtasks import add
from jobtasks_extra import cancel_job_named_in, touch

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


def test_cancel_ends_a_waiting_job_and_leaves_a_finished_one(q: Queue):
    waiting, done = q.enqueue(jobtasks.add, 1, 1), q.enqueue(jobtasks.add, 2, 2)
    assert q.cancel(waiting) is True
    run_burst(q)
    assert q.state(waiting).status is Status.CANCELLED
    assert q.cancel(done) is False and q.result(done) == 4
    assert q.retry(waiting) is True and run_burst(q) == 1 and q.result(waiting) == 2


def test_cancel_queued_job_never_runs(q: Queue, tmp_path):
    """A cancelled queued job is never claimed and result() raises JobCancelled."""
    marker = tmp_path / "ran"
    jid = q.enqueue(touch, str(marker))
    assert q.cancel(jid) is True and q.state(jid).status is Status.CANCELLED
    assert run_burst(q) == 0 and not marker.exists()
    with pytest.raises(JobCancelled):
        q.result(jid)
    assert q.cancel(jid) is False


def test_cancel_delayed_job(q: Queue):
    """A delayed job can be cancelled before it is due, and stays cancelled once it would be."""
    jid = q.enqueue_call(add, args=(1, 1), delay=0.3)
    assert q.cancel(jid) is True
    time.sleep(0.4)
    assert run_burst(q) == 0 and q.state(jid).status is Status.CANCELLED


def test_a_running_job_asked_to_cancel_sees_it_and_ends_cancelled(q: Queue):
    """A task that sees ctx.cancelled ends cancelled, whatever it returns."""
    jid = q.enqueue(jobtasks.wait_for_cancel)
    _, [claim] = q.engine.settle([], "w", 1)
    assert q.state(jid).status is Status.RUNNING
    assert q.cancel(jid) is True
    state = run_claim(q.engine, claim, q.config.rules)
    assert state.status is Status.CANCELLED and state.result is None


def test_cancelled_queued_job_never_runs_in_a_worker(q: Queue, tmp_path):
    """A job cancelled while queued is never run by a worker and stays cancelled."""
    cancelled_marker, other_marker = tmp_path / "cancelled-ran", tmp_path / "other-ran"
    cancelled = q.enqueue("jobtasks_extra:touch", str(cancelled_marker))
    other = q.enqueue("jobtasks_extra:touch", str(other_marker))
    assert q.cancel(cancelled)

    Worker(q).run(burst=True)

    assert q.state(other).status is Status.SUCCEEDED
    assert other_marker.exists()  # the worker did run, and ran what was not cancelled
    assert q.state(cancelled).status is Status.CANCELLED
    assert q.state(cancelled).attempts == 0
    assert not cancelled_marker.exists()


def test_running_job_that_checks_cancellation_stops_and_ends_cancelled(q: Queue, location: str,
                                                                       workers):
    """A running job that polls ctx.cancelled stops soon after q.cancel and ends cancelled."""
    jid = q.enqueue("jobtasks:stop_when_cancelled", 20)
    w = workers(location)
    wait_until(lambda: q.state(jid).status is Status.RUNNING)

    asked = time.monotonic()
    assert q.cancel(jid)
    state = q.wait(jid, timeout=20)

    assert state.status is Status.CANCELLED
    assert time.monotonic() - asked < 10  # it stopped itself: no 20 s run, no kill after 10 s
    ended = wait_until(lambda: [e for e in w.events("job.cancelled") if e["job_id"] == jid])
    assert "cause" not in ended[0]  # recorded from its own outcome, not from a kill


def test_running_job_ignoring_cancellation_is_killed_after_the_grace(q: Queue, location: str,
                                                                     children):
    """A running job that ignores q.cancel is killed after the cancel grace and ends cancelled."""
    jid = q.enqueue("jobtasks:ignore_cancel", 30)
    worker = children.start(CANCEL_GRACE_WORKER, location)
    wait_until(lambda: q.state(jid).status is Status.RUNNING)

    asked = time.monotonic()
    assert q.cancel(jid)
    state = q.wait(jid, timeout=25)

    assert state.status is Status.CANCELLED
    assert time.monotonic() - asked < 15  # not the task's 30 s
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    ended = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    ended = [e for e in ended if e["event"] == "job.cancelled"]
    assert [e["cause"] for e in ended] == ["cancelled and did not stop within the grace period"]
    # The job's own record says so too (jobq show prints it), not only the worker's log.
    assert state.error == ("killed: asked to cancel, it did not stop within the 0.5 s grace"
                           " period")


# A worker that looks for dead workers and cancelled jobs only every minute (first at its start).
RARELY_LOOKING_WORKER = """
import sys
from jobq import Queue
from workers import Worker
with Queue(sys.argv[1]) as q:
    Worker(q, cancel_grace=0, reap_interval=60, heartbeat_interval=60).run(burst=True)
"""


def test_a_cancel_reaches_the_worker_at_once_not_at_its_next_look(q: Queue, location: str,
                                                                  children):
    """The supervisor hears of a cancel (PostgreSQL: a NOTIFY; a directory: its shared cancel
    number) and starts the grace then, not at its next reap_interval a minute away."""
    jid = q.enqueue("jobtasks:ignore_cancel", 120)
    worker = children.start(RARELY_LOOKING_WORKER, location)
    wait_until(lambda: q.state(jid).status is Status.RUNNING)
    time.sleep(0.5)  # past the supervisor's first look, made as it starts
    assert q.cancel(jid)
    state = q.wait(jid, timeout=30)  # the next look would come after 60 s
    assert state.status is Status.CANCELLED and "did not stop within the 0 s grace" in state.error
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err


# postgres: a read of the cancel generation is reused for CANCEL_GENERATION_TTL (50 ms: see
# jobq.postgres.claims), so a cancel committed within 50 ms before the child starts a prefetched
# job is not seen and the job runs; reading it fresh per job makes a drain of short jobs 3x
# slower (see the report).
@pytest.mark.parametrize("location", ["local"], indirect=True)
def test_a_prefetched_job_cancelled_before_it_starts_never_runs(q: Queue, location: str,
                                                                  tmp_path: Path, monkeypatch):
    """The job before the target in the child's batch asks to cancel the target: the target
    never starts, and ends cancelled with no attempt.

    The batch window is made long (forked children inherit it), so that the child's watcher
    cannot give the target back first, as it does behind a job that runs long."""
    monkeypatch.setattr(child, "BATCH_WINDOW", 60.0)
    id_file, target_marker = tmp_path / "target-id", tmp_path / "target"
    q.enqueue_many(add, [(i, i) for i in range(20)])  # short jobs: the child prefetches
    canceller = q.enqueue_call(cancel_job_named_in, (location, str(id_file)))
    target = q.enqueue_call(touch, (str(target_marker),))
    id_file.write_text(target)
    Worker(q, concurrency=1).run(burst=True)
    assert q.state(canceller).result is True  # the target was not finished when asked
    state = q.state(target)
    assert not target_marker.exists()
    assert (state.status, state.attempts, state.errors) == (Status.CANCELLED, 0, [])
