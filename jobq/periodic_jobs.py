"""``@jobq.periodic``: declare a schedule next to its task, in code.

The decorator only records the schedule in this process; storing it is left to the worker that
imported the module (``jobq worker --import myapp.tasks``), when it starts firing schedules
(:mod:`workers.scheduling`). So importing a module of tasks never writes to a queue, and every
worker that imports it registers the same schedule (a put of an unchanged schedule keeps its
next fire time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # a worker starts without them: only the decorator makes a Schedule (issue 19)
    from datetime import timedelta

    from .schedule import Schedule

__all__ = ["periodic", "registered"]

F = TypeVar("F", bound=Callable[..., Any])

_registered: dict[str, Schedule] = {}


def periodic(cron: str | None = None, *, every: timedelta | None = None, tz: str = "UTC",
             misfire: str = "skip", overlap: str = "skip", name: str | None = None,
             args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             result_ttl: float | None = None,
             failure_ttl: float | None = None) -> Callable[[F], F]:
    """Run the decorated task at every time ``cron`` matches in zone ``tz``, or ``every`` so
    often (at multiples of it since the epoch in UTC): exactly one of the two.

    ``name`` defaults to the task's ``module.function``. ``result_ttl``/``failure_ttl``: how long
    each job it fires is kept once ended, as ``enqueue_call`` takes them (None: the queue's
    default). InvalidSchedule (at import) for a bad expression, interval, zone, policy or ttl;
    the function itself is returned unchanged.
    """
    def register(fn: F) -> F:
        # Not tasks.reference: the module does not hold the function until the decorator
        # returns. The worker checks the reference when it enqueues the first job.
        from .schedule import Schedule

        ref = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
        schedule = Schedule(name=name or ref.replace(":", "."), cron=cron, every=every,
                            task=ref,
                            args=tuple(args), kwargs=dict(kwargs or {}), tz=tz,
                            misfire=misfire, overlap=overlap, result_ttl=result_ttl,
                            failure_ttl=failure_ttl)
        _registered[schedule.name] = schedule
        return fn

    return register


def registered() -> list[Schedule]:
    """The schedules declared by the modules imported so far, by name."""
    return [_registered[n] for n in sorted(_registered)]
