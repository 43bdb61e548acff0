"""``current_job()``: what a running task knows about its own job, and how it checkpoints."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from .errors import ConfigError, NoCurrentJob

_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("jobq_job", default=None)


class JobContext:
    """The running job as its task sees it.

    ``checkpoint`` is the last object saved by any earlier attempt (or this one), ``None`` at first;
    a task that resumes from it and saves often loses at most the work since its last save.
    """

    def __init__(self, *, job_id: str, attempt: int, checkpoint: Any, progress: float,
                 save: Callable[[Any, float | None], Any], cancelled: Callable[[], bool]) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.checkpoint = checkpoint
        self.progress = progress
        self._save = save
        self._cancelled = cancelled

    def save(self, checkpoint: Any, progress: float | None = None) -> None:
        """Durably snapshot ``checkpoint`` (and ``progress`` in 0..1) before returning."""
        if progress is not None:
            if isinstance(progress, bool) or not isinstance(progress, (int, float)) \
                    or not 0.0 <= progress <= 1.0:
                raise ConfigError(f"progress must be a number from 0 to 1, not {progress!r}")
            progress = float(progress)
        self._save(checkpoint, progress)
        self.checkpoint = checkpoint
        if progress is not None:
            self.progress = max(self.progress, progress)

    @property
    def cancelled(self) -> bool:
        """True once cancellation was asked for; the task may stop early and ends cancelled."""
        return self._cancelled()

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id!r}, attempt={self.attempt})"


def current_job() -> JobContext:
    """The job the calling task is running as; raises NoCurrentJob outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise NoCurrentJob("current_job() was called outside a running job")
    return ctx


def current_set(ctx: JobContext) -> Callable[[], None]:
    """Make ``ctx`` the current job; return the function that undoes it."""
    token = _current.set(ctx)
    return lambda: _current.reset(token)
