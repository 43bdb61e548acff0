"""Running one claimed job in this process, and recording how its attempt ended.

:func:`execute` runs the task (its checkpoints are written as it goes) and returns an
:class:`Outcome` without recording it; :func:`record` applies an outcome through the engine. A worker
child executes and its supervisor records (in batches); :mod:`jobq.testing` does both in one
process. Either way a job runs through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple


from . import job_record, signatures, tasks, transitions
from .context import CURRENT, JobContext
from .engine import Claim, Engine
from .errors import (DamagedRecord, JobNotFound, JobqError, NotPicklable, PermanentFailure,
                     Released, SignatureMismatch, StorageError, TaskNotFound, WrongSecretKey)
from .pickling import PickleRules
from .state import JobState, Status
from ._json_lines import JsonLogger
from ._logging import DEBUG, get_logger

log = get_logger(__name__)

RetryDelay = Callable[[int], float]
# "unrunnable": the function does not exist or does not take the job's arguments (dead at once,
# the attempt not counted); "fatal": the task raised PermanentFailure (dead at once);
# "released": the task gave its job back while its worker was stopping (queued, uncharged).
Kind = Literal["succeeded", "failed", "cancelled", "damaged", "unrunnable", "fatal", "released"]


class Outcome(NamedTuple):
    """How one attempt ended, as the code that ran it saw it.

    ``error_type`` and ``error_message`` are set when the task raised (its exception's type and
    message, for the job.failed and job.dead events; ``error`` is the whole traceback, as
    stored), None otherwise. A named tuple: a frozen dataclass (there were two) costs some
    3.5 M instructions to build at every worker's start, and more to make for each job.
    """

    kind: Kind
    result: Any = None
    error: str | None = None
    duration: float = 0.0
    timeout: float | None = None  # the job's own limit, learnt when its payload was loaded
    error_type: str | None = None
    error_message: str | None = None


assert len(Outcome._fields) == 7  # as execute gives a success's


def format_error(exc: BaseException) -> str:
    """The error text stored for a failed attempt: type, message and traceback."""
    import traceback  # only when an attempt failed: not on a worker's start (issue 19)

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def type_name(exc: BaseException) -> str:
    """``ValueError``, ``mypkg.errors.Timeout``: as a traceback's last line names it."""
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a __str__ that raises must not turn a failed job into a worker error
        return "<exception str() failed>"


def load(engine: Engine, claim: Claim, rules: PickleRules) -> tuple[Any, Any]:
    """The claimed job's payload and its task function; JobqError if either cannot be loaded."""
    payload = job_record.load_payload(engine.payload_body(claim.job_id, claim.ref), rules,
                                      claim.job_id)
    fn = tasks.resolve(payload.task)
    signatures.check(fn, payload.task, payload.args, payload.kwargs)
    return payload, fn


def unloadable(engine: Engine, claim: Claim, exc: JobqError) -> Outcome:
    """The outcome of an attempt whose job :func:`load` refused with ``exc``.

    A damaged record reads the same on every attempt: it is copied aside and the job ends dead
    at once. So does a job whose module imports but has no such
    function, or whose arguments do not fit it: every attempt would fail the same way. Anything
    else, a module that cannot be imported or an unknown class say, fails the attempt as usual:
    a deploy may fix it before the next one.
    """
    if isinstance(exc, (TaskNotFound, SignatureMismatch)):
        return Outcome("unrunnable", error=f"cannot run job: {exc}")
    if isinstance(exc, DamagedRecord):
        try:
            saved_to = engine.set_aside(claim.job_id, claim.ref, exc)
        except WrongSecretKey:
            raise  # no damage: this process lacks the queue's current key, and must stop
        except StorageError as err:  # a full disk: fail the attempt, copy at the next one
            return failure(f"cannot load job: {exc}; copying the record aside failed: {err}")
        log.warning("job.record_damaged", job_id=claim.job_id, path=exc.path, offset=exc.offset,
                    reason=exc.reason, saved_to=saved_to)
        return Outcome("damaged", error=exc.with_copy(saved_to))
    return failure(f"cannot load job: {exc}")


def execute(engine: Engine, claim: Claim, payload: Any, fn: Callable[..., Any],
            *, cancelled: Callable[[], bool] | None = None,
            stopping: Callable[[], bool] = lambda: False,
            save: Callable[[Any, float | None], Any] | None = None) -> Outcome:
    """Call the task with its context; never raises for what the task does.

    Whether the job was asked to cancel is read only when the task asks (``ctx.cancelled``); the
    recorded outcome is decided by :func:`change_for` from the flag in the store. ``stopping``
    says whether the worker is shutting down (``ctx.stopping``): only then may a task end its
    attempt with ``ctx.release()``. ``save`` replaces the engine's ``save_checkpoint`` under
    the claim (a worker's rides out storage outages).
    """
    started = time.monotonic()
    job_id, token = claim.job_id, claim.token
    is_cancelled = cancelled or (lambda: engine.cancel_requested(job_id))
    state = claim.state
    ctx = JobContext._of(job_id, state.attempts, state.checkpoint, state.progress,
                         save or (lambda obj, progress: engine.save_checkpoint(
                             job_id, token, obj, progress)),
                         is_cancelled, stopping, lambda: parent_results(engine, job_id))
    current = CURRENT.set(ctx)
    try:
        result = fn(*payload.args, **payload.kwargs)
    except Released as exc:
        if stopping():
            return Outcome("released", duration=time.monotonic() - started,
                           timeout=payload.timeout)
        # Given back while no worker is stopping, it would be claimed and given back for ever.
        return Outcome("failed", error=f"ctx.release() called while the worker was not stopping:"
                       f" {format_error(exc)}", duration=time.monotonic() - started,
                       timeout=payload.timeout)
    except Exception as exc:
        kind: Kind = "fatal" if isinstance(exc, PermanentFailure) else "failed"
        return Outcome(kind, error=format_error(exc), duration=time.monotonic() - started,
                       timeout=payload.timeout, error_type=type_name(exc),
                       error_message=message(exc))
    finally:
        CURRENT.reset(current)
    # tuple.__new__: Outcome's class called costs a Python call of its __new__ (one a job)
    return tuple.__new__(Outcome, ("succeeded", result, None, time.monotonic() - started,
                                   payload.timeout, None, None))


def parent_results(engine: Engine, job_id: str) -> list[Any]:
    """The results of the job's parents in ``depends_on`` order (None for one without)."""
    results = []
    for parent in engine.parents(job_id):
        try:
            results.append(engine.get(parent).result)
        except JobNotFound:  # purged since it ended
            results.append(None)
    return results


def failure(error: str, duration: float = 0.0) -> Outcome:
    return Outcome("failed", error=error, duration=duration)


def change_for(outcome: Outcome, retry_delay: RetryDelay
               ) -> Callable[[JobState, float, int], JobState]:
    """The store transition that records ``outcome``.

    A job asked to cancel while it ran ends cancelled, however its attempt ended: the flag is read
    from the store in the transaction that records it, so a late request is not missed.
    """
    def change(s: JobState, now: float, max_attempts: int) -> JobState:
        if outcome.kind == "released":  # uncharged; ends cancelled if asked to meanwhile
            return transitions.released(s, now)
        if outcome.kind == "cancelled" or s.cancel_requested:
            return transitions.cancelled(s, now)
        if outcome.kind == "succeeded":
            return transitions.succeeded(s, outcome.result, now)
        if outcome.kind in ("damaged", "unrunnable"):
            return transitions.damaged(s, outcome.error or "payload record damaged", now)
        if outcome.kind == "fatal":
            return transitions.given_up(s, outcome.error or "failed for good", now)
        return transitions.failed(s, outcome.error or "failed", now, max_attempts=max_attempts,
                                  retry_delay=retry_delay(s.attempts))
    return change


def record(engine: Engine, claim: Claim, outcome: Outcome, *, retry_delay: RetryDelay,
           logger: Any = None) -> JobState:
    """Record an outcome under its claim; a result that cannot be pickled fails the attempt."""
    try:
        state = engine.finish(claim.job_id, claim.token, change_for(outcome, retry_delay))
    except NotPicklable as exc:
        outcome = failure(f"the task's return value cannot be stored: {exc}", outcome.duration)
        state = engine.finish(claim.job_id, claim.token, change_for(outcome, retry_delay))
    log_transition(state, outcome.duration, logger=logger, outcome=outcome)
    return state


EVENTS = {Status.SUCCEEDED: "job.succeeded", Status.FAILED: "job.failed", Status.DEAD: "job.dead",
          Status.CANCELLED: "job.cancelled", Status.QUEUED: "job.released",
          Status.RUNNING: "job.claimed"}
_VALUES = {status: status.value for status in Status}  # an enum's .value is a property


def log_transition(state: JobState, duration: float | None = None, *, logger: Any = None,
                   outcome: Outcome | None = None, **extra: Any) -> None:
    """One structured event per job transition (a claim's at debug level: thousands a second).

    A worker passes its own logger, bound once, so an event costs no per-call logger set-up.
    A failed or dead job's event also says why (see :func:`failure_fields`); ``outcome`` is the
    attempt's, when the code that ran it has it.
    """
    status = state.status
    if status is Status.SUCCEEDED and duration is not None and not extra:  # a worker's every job
        if type(logger) is JsonLogger:  # a worker child's, in JSON: the same line, sooner
            logger.succeeded(state.job_id, state.task, state.attempts, round(duration, 6))
            return
        # The same fields in the same order as below, passed straight: building them in a dict
        # first, then unpacking it, costs a dict and a copy an event.
        (log if logger is None else logger).info(
            "job.succeeded", job_id=state.job_id, task=state.task, attempt=state.attempts,
            status="succeeded", duration=round(duration, 6))
        return
    fields = {"job_id": state.job_id, "task": state.task, "attempt": state.attempts,
              "status": _VALUES[status], **extra}
    if duration is not None:
        fields["duration"] = round(duration, 6)
    logger = log if logger is None else logger
    if status is Status.RUNNING:
        logger.debug(EVENTS[status], **fields)
        return
    if status is Status.FAILED or status is Status.DEAD:
        failure_fields(fields, state, outcome, logger)
    logger.info(EVENTS[status], **fields)


def failure_fields(fields: dict[str, Any], state: JobState, outcome: Outcome | None,
                   logger: Any) -> None:
    """Add ``error_type`` and ``error`` to a failure's event, and at debug level ``traceback``.

    Without them an operator reading the log learns that a job failed but not why. Only
    failures pay for them. ``error_type`` is the exception's type when the task raised; None when
    jobq ended the attempt (a timeout, a crash, a job that cannot be loaded), ``error`` then
    being the reason recorded.
    """
    if outcome is not None and outcome.error_type is not None:  # the task raised
        fields["error_type"] = outcome.error_type
        fields["error"] = outcome.error_message
        enabled = getattr(logger, "is_enabled_for", None)
        if outcome.error and (enabled is None or enabled(DEBUG)):
            fields["traceback"] = outcome.error
        return
    lines = (state.error or "").strip().splitlines()
    fields["error_type"] = None
    fields["error"] = lines[-1] if lines else None


def run_claim(engine: Engine, claim: Claim, rules: PickleRules, *,
              retry_delay: RetryDelay = lambda attempt: transitions.backoff(attempt),
              logger: Any = None) -> JobState:
    """Load, execute and record one claim in this process (``logger``: for its events)."""
    try:
        payload, fn = load(engine, claim, rules)
    except JobqError as exc:
        return record(engine, claim, unloadable(engine, claim, exc), retry_delay=retry_delay,
                      logger=logger)
    outcome = execute(engine, claim, payload, fn)
    return record(engine, claim, outcome, retry_delay=retry_delay, logger=logger)
