"""current_job(), on every engine: the context a task runs in, its attempt number, its
checkpoints and progress, and giving a job back with ctx.release()."""

from __future__ import annotations

import pytest

import jobtasks
from jobq import Queue, Status, current_job
from jobq.context import JobContext
from jobq.errors import ConfigError, NoCurrentJob
from jobq.execution import execute, load, record
from jobq.testing import run_burst


def test_current_job_outside_a_job_raises():
    """Calling current_job() outside a running job is a clear error."""
    with pytest.raises(NoCurrentJob):
        current_job()


def test_checkpoints_are_kept_and_the_next_attempt_resumes_from_them(q: Queue):
    jid = q.enqueue(jobtasks.count_with_checkpoints, 10, crash_at=4)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.result, state.attempts) == (Status.SUCCEEDED, 10, 2)
    assert state.checkpoint == 10 and state.progress == 1.0


def test_a_failed_attempt_resumes_from_its_checkpoint(q: Queue):
    """Attempt 2 starts from what attempt 1 last saved, and progress is kept."""
    jid = q.enqueue(jobtasks.count_with_checkpoints, 10, 4)
    run_burst(q, max_jobs=1)
    state = q.state(jid)
    assert (state.status, state.checkpoint, state.progress) == (Status.FAILED, 4, 0.4)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.result, state.attempts, state.progress) == (
        Status.SUCCEEDED, 10, 2, 1.0)


def test_attempt_numbers_start_at_one(q: Queue):
    """ctx.attempt is 1 on the first run and counts up on retries."""
    jid = q.enqueue_call(jobtasks.fail_until, args=(3,), max_attempts=3)
    run_burst(q)
    assert q.result(jid) == 3


def test_bad_progress_is_refused(q: Queue):
    """progress outside 0..1 raises and the checkpoint is not saved."""
    jid = q.enqueue(jobtasks.echo)
    _, [claim] = q.engine.settle([], "w", 1)
    ctx = JobContext(job_id=jid, attempt=1, checkpoint=None, progress=0.0,
                     save=lambda obj, p: q.engine.save_checkpoint(jid, claim.token, obj, p),
                     cancelled=lambda: False)
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ConfigError):
            ctx.save("x", progress=bad)
    assert q.state(jid).checkpoint is None


def test_unpicklable_result_fails_the_attempt(q: Queue):
    """A return value that cannot be stored fails the attempt with a clear error."""
    jid = q.enqueue_call(jobtasks.unpicklable_result, max_attempts=1)
    run_burst(q)
    state = q.state(jid)
    assert state.status is Status.DEAD and "return value cannot be stored" in state.error


def test_release_outside_a_stopping_worker_fails_the_attempt(q: Queue):
    """ctx.release() while no worker is stopping is a charged failure, not a job given back for
    ever; ctx.stopping is false there."""
    jid = q.enqueue_call(jobtasks.release_at_once, max_attempts=2)
    run_burst(q)
    state = q.state(jid)
    assert (state.status, state.attempts) == (Status.DEAD, 2)
    assert "ctx.release() called while the worker was not stopping" in state.error


def test_release_while_stopping_gives_the_job_back_uncharged_with_its_checkpoint(q: Queue,
                                                                                   tmp_path):
    """A task that saves, sees ctx.stopping and releases is queued again, attempt not charged."""
    q.enqueue(jobtasks.sum_steps, 10, 0.0, str(tmp_path / "pid"), None, True)
    _, [claim] = q.engine.settle([], "w", 1)
    payload, fn = load(q.engine, claim, q.config.rules)
    outcome = execute(q.engine, claim, payload, fn, stopping=lambda: True)
    assert outcome.kind == "released"
    state = record(q.engine, claim, outcome, retry_delay=lambda attempt: 0.0)
    assert (state.status, state.attempts, state.checkpoint, state.errors) == (
        Status.QUEUED, 0, (1, 1), [])
