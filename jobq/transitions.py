"""How a job's state changes, as pure functions: the store applies them, tests call them directly.

Each takes the current :class:`JobState` and the time, and returns a new one; none does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .state import FINISHED, JobState, Status


def _evolve(state: JobState, **changes: Any) -> JobState:
    """A copy of ``state`` with ``changes``: ``dataclasses.replace`` without re-running
    ``__init__`` over every field, which cost more than the rest of recording a finished job."""
    new = object.__new__(JobState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


def claimed(state: JobState, now: float) -> JobState:
    """A worker starts a new attempt."""
    return _evolve(state, status=Status.RUNNING, attempts=state.attempts + 1,
                               started_at=now, updated_at=now)


def checkpointed(state: JobState, checkpoint: Any, progress: float | None, now: float,
                 token: int | None = None) -> JobState:
    """The task saved a checkpoint; progress never goes backwards.

    A save under claim ``token`` that changes the checkpoint or raises progress marks the attempt
    as one that made progress (``checkpoint_token``): should its process die, it is not charged
    (see :func:`interrupted`). Saving again what the attempt resumed from is no progress, so a
    task that saves first and then kills its worker is still set aside.
    """
    new_progress = state.progress if progress is None else max(state.progress, progress)
    if token is not None and state.checkpoint_token != token \
            and (new_progress > state.progress or not _same(checkpoint, state.checkpoint)):
        return _evolve(state, checkpoint=checkpoint, progress=new_progress, updated_at=now,
                       checkpoint_token=token)
    return _evolve(state, checkpoint=checkpoint, progress=new_progress, updated_at=now)


def _same(new: Any, old: Any) -> bool:
    """Is ``new`` the checkpoint already saved? Unknown (``==`` raised or is not a bool, as with
    numpy arrays) counts as a change."""
    if new is old:
        return True
    try:
        return bool(new == old)
    except Exception:  # noqa: BLE001 - any type's __eq__ or __bool__ may raise
        return False


def succeeded(state: JobState, result: Any, now: float) -> JobState:
    # _evolve's work item by item: a worker records a success a job, and the keywords cost
    # some 2,000 instructions more.
    fields = state.__dict__.copy()
    fields["status"] = Status.SUCCEEDED
    fields["result"] = result
    fields["progress"] = 1.0
    fields["finished_at"] = now
    fields["updated_at"] = now
    new = object.__new__(JobState)
    new.__dict__ = fields
    return new


def failed(state: JobState, error: str, now: float, *, max_attempts: int,
           retry_delay: float) -> JobState:
    """An attempt raised: retry after ``retry_delay`` seconds, or dead once attempts are spent."""
    errors = [*state.errors, error]
    if state.attempts >= max_attempts:
        return _evolve(state, status=Status.DEAD, error=error, errors=errors,
                                   finished_at=now, updated_at=now)
    return _evolve(state, status=Status.FAILED, error=error, errors=errors,
                               run_at=now + retry_delay, updated_at=now)


def given_up(state: JobState, error: str, now: float) -> JobState:
    """The task raised PermanentFailure: dead at once, its remaining attempts unspent."""
    return _evolve(state, status=Status.DEAD, error=error, errors=[*state.errors, error],
                   finished_at=now, updated_at=now)


def damaged(state: JobState, reason: str, now: float) -> JobState:
    """The job's record cannot be read, or its function does not exist or does not take its
    arguments, so no attempt can ever run it: dead at once, with the reason. The attempt that
    found out never ran the task and is not counted; no retry is due."""
    return _evolve(state, status=Status.DEAD, attempts=max(0, state.attempts - 1), error=reason,
                   errors=[*state.errors, reason], finished_at=now, updated_at=now)


def cancel_requested(state: JobState, now: float) -> JobState:
    """A running job is asked to stop; it ends cancelled when its worker sees the flag."""
    return _evolve(state, cancel_requested=True, updated_at=now)


def cancelled(state: JobState, now: float, reason: str | None = None) -> JobState:
    """The job ends cancelled; ``reason``, if given, is kept as its error (the worker had to
    kill it, say), so that ``jobq show`` tells what the worker's log told."""
    if reason is None:
        return _evolve(state, status=Status.CANCELLED, cancel_requested=True,
                       finished_at=now, updated_at=now)
    return _evolve(state, status=Status.CANCELLED, cancel_requested=True, error=reason,
                   errors=[*state.errors, reason], finished_at=now, updated_at=now)


def requeued(state: JobState, now: float) -> JobState:
    """``q.retry`` of a dead or cancelled job: a fresh budget of attempts, its history kept."""
    return _evolve(state, status=Status.QUEUED, attempts=0, crashes=0,
                               cancel_requested=False, run_at=now, finished_at=None, updated_at=now)


def can_requeue(state: JobState) -> bool:
    return state.status in (Status.DEAD, Status.CANCELLED)


def is_finished(state: JobState) -> bool:
    return state.status in FINISHED


def backoff(attempt: int, *, base: float = 1.0, cap: float = 300.0,
            rand: Callable[[], float] | None = None) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, full jitter.

    Full jitter (a uniform draw up to the exponential bound) spreads the retries of jobs that
    failed together, so a recovering dependency is not hit by all of them at once. ``rand``:
    ``random.random`` unless given (imported at the first retry, not by every worker as it
    starts: issue 19).
    """
    if base <= 0:
        return 0.0
    if rand is None:
        import random
        rand = random.random
    bound = min(cap, base * 2 ** min(attempt - 1, 62))
    return bound * (0.5 + 0.5 * rand())


def interrupted(state: JobState, cause: str, now: float, *, max_attempts: int,
                max_crashes: int, token: int | None = None) -> JobState:
    """The process running attempt ``token`` died (a crash is not an exception raised by the task).

    An attempt that saved a new checkpoint made progress: it is charged neither as an attempt nor
    as a crash, so a long job killed now and then (an OOM kill, a node drained) resumes however
    often that happens. One that saved nothing counts both ways: a job that kills every worker it
    touches is set aside as dead once it reaches ``max_crashes`` (or its attempts run out), with
    the cause. Otherwise it is due again at once, to resume from its last checkpoint.
    """
    if token is not None and state.checkpoint_token == token:
        error = f"attempt {state.attempts} interrupted after saving a checkpoint (not charged):" \
                f" {cause}"
        return _evolve(state, status=Status.FAILED, attempts=max(0, state.attempts - 1),
                       error=error, errors=[*state.errors, error], run_at=now, updated_at=now)
    crashes = state.crashes + 1
    error = f"attempt {state.attempts} interrupted: {cause}"
    errors = [*state.errors, error]
    if crashes >= max_crashes:
        error = f"set aside after {crashes} crashed attempts; last: {cause}"
    if crashes >= max_crashes or state.attempts >= max_attempts:
        return _evolve(state, status=Status.DEAD, crashes=crashes, error=error,
                                   errors=errors, finished_at=now, updated_at=now)
    return _evolve(state, status=Status.FAILED, crashes=crashes, error=error,
                               errors=errors, run_at=now, updated_at=now)


def released(state: JobState, now: float) -> JobState:
    """A worker gives back a claimed job (shutting down, or a prefetched claim it never started);
    the attempt is not charged. A job asked to cancel meanwhile ends cancelled: queued again, it
    would run once more only to be cancelled at the end."""
    attempts = max(0, state.attempts - 1)
    if state.cancel_requested:
        return _evolve(state, status=Status.CANCELLED, attempts=attempts, finished_at=now,
                       updated_at=now)
    return _evolve(state, status=Status.QUEUED, attempts=attempts, run_at=now, updated_at=now)


def waiting(state: JobState, now: float) -> JobState:
    """A new job whose parents have not all ended yet waits for them, not for a worker."""
    return _evolve(state, status=Status.WAITING, updated_at=now)


def parents_done(state: JobState, now: float) -> JobState:
    """Every parent of a waiting job ended (as its policy allows): due at once, or at its
    run-at time if that is later."""
    return _evolve(state, status=Status.QUEUED, run_at=max(state.run_at, now), updated_at=now)


def parent_failed(state: JobState, parent: str, parent_status: Status, now: float) -> JobState:
    """A parent of a waiting job ended dead or cancelled, and its policy is to cancel: the job
    ends cancelled, naming the parent."""
    from . import dependencies  # jobs with parents only: not at every worker's start

    return cancelled(state, now, dependencies.reason(parent, parent_status))
