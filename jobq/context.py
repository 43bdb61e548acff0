"""``current_job()``: what a running task knows about its own job, and how it checkpoints."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, NoReturn

from .errors import ConfigError, NoCurrentJob, Released

_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("jobq_job", default=None)


class JobContext:
    """The running job as its task sees it.

    ``checkpoint`` is the last object saved by any earlier attempt (or this one), ``None`` at first;
    a task that resumes from it and saves often loses at most the work since its last save.

    A long task checks :attr:`stopping` after each save and, once it is true, ends its attempt
    with :meth:`release`; its worker then exits without waiting out its shutdown grace::

        ctx = current_job()
        i, total = ctx.checkpoint or (0, 0)
        while i < len(rows):
            total += process(rows[i])
            i += 1
            if i % 500 == 0:
                ctx.save((i, total), progress=i / len(rows))
                if ctx.stopping:
                    ctx.release()  # raises: resumes from (i, total) on the next worker
        return total
    """

    def __init__(self, *, job_id: str, attempt: int, checkpoint: Any, progress: float,
                 save: Callable[[Any, float | None], Any], cancelled: Callable[[], bool],
                 stopping: Callable[[], bool] = lambda: False,
                 parent_results: Callable[[], list[Any]] = list) -> None:
        self._fill(job_id, attempt, checkpoint, progress, save, cancelled, stopping,
                   parent_results)

    @classmethod
    def _of(cls, job_id: str, attempt: int, checkpoint: Any, progress: float,
            save: Callable[[Any, float | None], Any], cancelled: Callable[[], bool],
            stopping: Callable[[], bool], parent_results: Callable[[], list[Any]]
            ) -> JobContext:
        """``JobContext(job_id=..., ...)`` from positional arguments: a worker makes one a job,
        and eight keywords cost it some 2,000 instructions more (issue 19)."""
        ctx = object.__new__(cls)
        ctx._fill(job_id, attempt, checkpoint, progress, save, cancelled, stopping,
                  parent_results)
        return ctx

    def _fill(self, job_id: str, attempt: int, checkpoint: Any, progress: float,
              save: Callable[[Any, float | None], Any], cancelled: Callable[[], bool],
              stopping: Callable[[], bool], parent_results: Callable[[], list[Any]]) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.checkpoint = checkpoint
        self.progress = progress
        self._save = save
        self._cancelled = cancelled
        self._stopping = stopping
        self._parent_results = parent_results
        self._parents_read: list[Any] | None = None

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

    @property
    def stopping(self) -> bool:
        """True once the worker running this job was asked to stop (SIGTERM, SIGINT): save a
        checkpoint and call :meth:`release`. One read of shared memory: cheap in a tight loop."""
        return self._stopping()

    @property
    def parent_results(self) -> list[Any]:
        """The results of the jobs this one depends on (``depends_on``), in that order; None
        for a parent that has none (it ended dead or cancelled under ``on_dependency_failure=
        "run"``, or was purged). Read from storage once, when first asked."""
        if self._parents_read is None:
            self._parents_read = list(self._parent_results())
        return self._parents_read

    def release(self) -> NoReturn:
        """End this attempt now, as the worker stops: the job is queued again, the attempt is not
        charged, and the next one starts from the last saved checkpoint (save first). Raises
        :class:`~jobq.errors.Released`, which must propagate out of the task. Outside a stopping
        worker the attempt fails instead: a job must not give itself back forever."""
        raise Released(f"job {self.job_id!r} released by its task")

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


# For the hot path of a worker (jobq.execution): ``CURRENT.set(ctx)``, then ``.reset(token)``,
# without two Python calls a job.
CURRENT = _current
