"""current_job(): the context a task runs in, its checkpoints, and cancellation."""

from __future__ import annotations

import pytest

from jobq import Status, current_job
from jobq.errors import ConfigError, NoCurrentJob
from jobq.testing import run_burst

import jobtasks


def test_current_job_outside_a_job_raises():
    """Calling current_job() outside a running job is a clear error."""
    with pytest.raises(NoCurrentJob):
        current_job()


def test_a_failed_attempt_resumes_from_its_checkpoint(queue):
    """Attempt 2 starts from what attempt 1 last saved, and progress is kept."""
    jid = queue.enqueue(jobtasks.count_with_checkpoints, 10, 4)
    run_burst(queue, max_jobs=1)
    state = queue.state(jid)
    assert (state.status, state.checkpoint, state.progress) == (Status.FAILED, 4, 0.4)
    run_burst(queue)
    state = queue.state(jid)
    assert (state.status, state.result, state.attempts, state.progress) == (
        Status.SUCCEEDED, 10, 2, 1.0)


def test_attempt_numbers_start_at_one(queue):
    """ctx.attempt is 1 on the first run and counts up on retries."""
    jid = queue.enqueue_call(jobtasks.fail_until, args=(3,), max_attempts=3)
    run_burst(queue)
    assert queue.result(jid) == 3


def test_task_sees_cancellation_and_ends_cancelled(queue):
    """A task that sees ctx.cancelled ends cancelled, whatever it returns."""
    jid = queue.enqueue(jobtasks.wait_for_cancel)
    claim = queue.store.claim("w")[0]
    queue.cancel(jid)
    from jobq.execution import run_claim
    state = run_claim(queue.engine, claim, queue.config.rules)
    assert state.status is Status.CANCELLED and state.result is None


def test_bad_progress_is_refused(queue):
    """progress outside 0..1 raises and the checkpoint is not saved."""
    jid = queue.enqueue(jobtasks.echo)
    claim = queue.store.claim("w")[0]
    from jobq.context import JobContext
    ctx = JobContext(job_id=jid, attempt=1, checkpoint=None, progress=0.0,
                     save=lambda obj, p: queue.store.save_checkpoint(jid, claim.token, obj, p),
                     cancelled=lambda: False)
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ConfigError):
            ctx.save("x", progress=bad)
    assert queue.state(jid).checkpoint is None


def test_unpicklable_result_fails_the_attempt(queue):
    """A return value that cannot be stored fails the attempt with a clear error."""
    jid = queue.enqueue_call(jobtasks.unpicklable_result, max_attempts=1)
    run_burst(queue)
    state = queue.state(jid)
    assert state.status is Status.DEAD and "return value cannot be stored" in state.error


def test_release_outside_a_stopping_worker_fails_the_attempt(queue):
    """ctx.release() while no worker is stopping is a charged failure, not a job given back for
    ever; ctx.stopping is false there."""
    jid = queue.enqueue_call(jobtasks.release_at_once, max_attempts=2)
    run_burst(queue)
    state = queue.state(jid)
    assert (state.status, state.attempts) == (Status.DEAD, 2)
    assert "ctx.release() called while the worker was not stopping" in state.error


def test_release_while_stopping_gives_the_job_back_uncharged_with_its_checkpoint(queue, tmp_path):
    """A task that saves, sees ctx.stopping and releases is queued again, attempt not charged."""
    from jobq.execution import execute, load, record
    jid = queue.enqueue(jobtasks.sum_steps, 10, 0.0, str(tmp_path / "pid"), None, True)
    claim = queue.store.claim("w")[0]
    payload, fn = load(queue.engine, claim, queue.config.rules)
    outcome = execute(queue.engine, claim, payload, fn, stopping=lambda: True)
    assert outcome.kind == "released"
    state = record(queue.store, claim, outcome, retry_delay=lambda attempt: 0.0)
    assert (state.status, state.attempts, state.checkpoint, state.errors) == (
        Status.QUEUED, 0, (1, 1), [])
