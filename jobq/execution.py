"""Running one claimed job in this process: load it, call its task, record the outcome.

Worker children and :mod:`jobq.testing` both run jobs through :func:`run_claim`, so a job behaves
the same in a test as in production.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import structlog

from . import job_record, tasks, transitions
from .context import JobContext, running
from .errors import JobqError, NotPicklable
from .log import Log
from .pickling import PickleRules
from .state import JobState, Status
from .store import Claim, Store

log = structlog.get_logger(__name__)

RetryDelay = Callable[[int], float]


def format_error(exc: BaseException) -> str:
    """The error text stored for a failed attempt: type, message and traceback."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def run_claim(store: Store, log_: Log, claim: Claim, rules: PickleRules, *,
              retry_delay: RetryDelay = lambda attempt: transitions.backoff(attempt)) -> JobState:
    """Run ``claim`` to the end of its attempt and return the recorded state."""
    started = time.monotonic()
    job_id, token, attempt = claim.job_id, claim.token, claim.state.attempts
    try:
        payload = job_record.load_payload(log_.read(claim.payload_pos).body, rules)
        fn = tasks.resolve(payload.task)
    except JobqError as exc:
        return _record_failure(store, claim, f"cannot load job: {exc}", retry_delay, started)

    ctx = JobContext(job_id=job_id, attempt=attempt, checkpoint=claim.state.checkpoint,
                     progress=claim.state.progress,
                     save=lambda obj, progress: store.save_checkpoint(job_id, token, obj, progress),
                     cancelled=lambda: store.cancel_requested(job_id))
    try:
        with running(ctx):
            result = fn(*payload.args, **payload.kwargs)
    except Exception as exc:
        if store.cancel_requested(job_id):
            return _record(store, claim, lambda s, now, _: transitions.cancelled(s, now), started)
        return _record_failure(store, claim, format_error(exc), retry_delay, started)
    if store.cancel_requested(job_id):
        return _record(store, claim, lambda s, now, _: transitions.cancelled(s, now), started)
    try:
        return _record(store, claim, lambda s, now, _: transitions.succeeded(s, result, now),
                       started)
    except NotPicklable as exc:
        return _record_failure(store, claim, f"the task's return value cannot be stored: {exc}",
                               retry_delay, started)


def _record_failure(store: Store, claim: Claim, error: str, retry_delay: RetryDelay,
                    started: float) -> JobState:
    def change(state: JobState, now: float, max_attempts: int) -> JobState:
        return transitions.failed(state, error, now, max_attempts=max_attempts,
                                  retry_delay=retry_delay(state.attempts))
    return _record(store, claim, change, started)


def _record(store: Store, claim: Claim, change: Callable[[JobState, float, int], JobState],
            started: float) -> JobState:
    state = store.finish(claim.job_id, claim.token, change)
    event = {Status.SUCCEEDED: "job.succeeded", Status.FAILED: "job.failed",
             Status.DEAD: "job.dead", Status.CANCELLED: "job.cancelled"}[state.status]
    log.info(event, job_id=state.job_id, task=state.task, attempt=state.attempts,
             status=state.status.value, duration=round(time.monotonic() - started, 6))
    return state


