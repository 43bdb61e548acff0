"""Periodic schedules: a cron expression in a time zone, or an interval, and the pure decisions
of firing them.

A :class:`Schedule` is a value: what to run (a task reference and JSON arguments), when (a cron
expression read by `cronsim <https://github.com/cuu508/cronsim>`_ in an IANA time zone, or an
interval of whole seconds), and two policies. Deciding which fire times are due is
:meth:`Schedule.firing`, a pure function of the stored next fire time and the clock, so tests
call it without processes or sleeps.

Cron times are local to the schedule's zone; cronsim resolves the DST edges as cron users
expect: a local time that does not exist (the spring gap) fires at the first instant after it,
and an ambiguous one (the autumn fold) fires once. Each fire time becomes one job whose id is
:func:`job_id` (``periodic:<name>:<UTC time>``), so workers racing to fire the same time make
one job between them (an id already stored keeps its first record).

An interval schedule (``every``) fires at the multiples of its interval since the Unix epoch
(``t = k * every`` in UTC seconds), not at intervals from when a worker started: so every
worker computes the same times, and the job ids dedupe as they do for cron. Time zones do not
apply to it (a ``tz`` other than UTC is refused). A schedule stored before intervals existed
has no ``every`` in its JSON and reads back as the cron schedule it was.

Misfire policy, when the worker finds fire times it missed (no worker ran, or a long pause):

``skip``  fire the latest missed time only if it is at most :data:`GRACE` seconds late
``once``  fire the latest missed time, however late: one catch-up job
``all``   fire every missed time, the latest :data:`MAX_CATCH_UP` of them at most

Overlap policy: ``skip`` fires nothing while the job of the schedule's previous firing is
still waiting or running; ``allow`` fires regardless.

Retention: ``result_ttl``/``failure_ttl`` are those of every job the schedule fires (as
``enqueue_call`` takes them, :mod:`jobq.retention`); None leaves the firing worker's queue
default (keep forever, unless its ``Queue`` was opened with others). A job purged by them does
not hold up ``overlap="skip"``: a purged job has ended. They are stored in the schedule's spec
only when given, so a schedule without them reads as it did before they existed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from ._logging import get_logger
from .errors import InvalidJob, InvalidSchedule

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# cronsim and zoneinfo are imported where a schedule is made or fired, not with jobq: a worker
# on a queue without schedules, and every other command, start without them (issue 19).

__all__ = ["GRACE", "MAX_CATCH_UP", "MISFIRE", "OVERLAP", "PREFIX", "Firing", "Schedule",
           "Stored", "interval_text", "job_id"]

MISFIRE = ("skip", "once", "all")
OVERLAP = ("skip", "allow")
GRACE = 60.0  # seconds late a "skip" schedule still fires a time
MAX_CATCH_UP = 1000  # most missed times an "all" schedule fires at once (the latest ones)
PREFIX = "periodic:"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_TASK = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class Firing(NamedTuple):
    """What a worker does now: make a job for each of ``times`` (oldest first), then store
    ``next_at`` as the schedule's next fire time."""

    times: list[float]
    next_at: float


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """One periodic schedule: run ``task(*args, **kwargs)`` at every time ``cron`` matches in
    zone ``tz``, or every ``every`` seconds (exactly one of the two). InvalidSchedule if any
    field is unusable."""

    name: str
    cron: str | None = None
    every: int | None = None  # seconds; a timedelta or a whole number of seconds is accepted
    task: str  # "module:function", as jobq.tasks.reference makes it
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    tz: str = "UTC"
    misfire: str = "skip"
    overlap: str = "skip"
    result_ttl: float | None = None  # seconds each fired job is kept once it succeeded
    failure_ttl: float | None = None  # ... once it ended dead; None: the queue's default

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidSchedule("a schedule's name must be 1 to 100 letters, digits or _.-,"
                                  f" not {self.name!r}", name=self.name)
        if not isinstance(self.task, str) or not _TASK.fullmatch(self.task):
            raise InvalidSchedule(f"schedule {self.name!r}: task must be a 'module:function'"
                                  f" reference, not {self.task!r}", name=self.name)
        if self.misfire not in MISFIRE:
            raise InvalidSchedule(f"schedule {self.name!r}: misfire must be one of"
                                  f" {', '.join(MISFIRE)}, not {self.misfire!r}", name=self.name)
        if self.overlap not in OVERLAP:
            raise InvalidSchedule(f"schedule {self.name!r}: overlap must be one of"
                                  f" {', '.join(OVERLAP)}, not {self.overlap!r}", name=self.name)
        for ttl in ("result_ttl", "failure_ttl"):
            object.__setattr__(self, ttl, _ttl(self.name, ttl, getattr(self, ttl)))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        try:
            json.dumps([self.args, self.kwargs])
        except (TypeError, ValueError) as exc:
            raise InvalidSchedule(f"schedule {self.name!r}: arguments must be JSON values"
                                  f" (strings, numbers, lists, dicts): {exc}",
                                  name=self.name) from exc
        zone = self.zone()  # checks tz
        if (self.cron is None) == (self.every is None):
            raise InvalidSchedule(f"schedule {self.name!r}: give exactly one of cron (an"
                                  " expression) or every (an interval)", name=self.name)
        if self.every is not None:
            object.__setattr__(self, "every", _seconds(self.name, self.every))
            if self.tz != "UTC":
                raise InvalidSchedule(f"schedule {self.name!r}: an interval schedule fires at"
                                      " multiples of its interval since the epoch in UTC; a time"
                                      f" zone does not apply (not {self.tz!r})", name=self.name)
            return
        if not isinstance(self.cron, str):
            raise InvalidSchedule(f"schedule {self.name!r}: cron must be a string, not"
                                  f" {self.cron!r}", name=self.name)
        from cronsim import CronSim, CronSimError

        try:
            next(CronSim(self.cron, datetime(2026, 1, 1, tzinfo=zone)))
        except (CronSimError, StopIteration) as exc:
            raise InvalidSchedule(f"schedule {self.name!r}: bad cron expression {self.cron!r}:"
                                  f" {exc}", name=self.name) from exc

    def zone(self) -> ZoneInfo:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise InvalidSchedule(f"schedule {self.name!r}: unknown time zone {self.tz!r}"
                                  " (an IANA name such as 'Europe/Berlin')",
                                  name=self.name) from exc

    @property
    def when(self) -> str:
        """When it fires, as people read it: the cron expression, or "every 5m"."""
        return self.cron if self.every is None else f"every {interval_text(self.every)}"

    @property
    def kept(self) -> str:
        """How long its jobs are kept once ended, as people read it: "result 0s, failure 1h"
        (the ttls given; see :meth:`ttls`), "-" where both are the queue's."""
        def text(seconds: float) -> str:
            return interval_text(int(seconds)) if seconds and float(seconds).is_integer() \
                else f"{seconds:g}s"
        return ", ".join(f"{name.partition('_')[0]} {text(value)}"
                         for name, value in self.ttls().items()) or "-"

    def next_after(self, t: float) -> float:
        """The first fire time strictly after ``t`` (seconds since the epoch)."""
        if self.every is not None:
            return float((math.floor(t) // self.every + 1) * self.every)
        from cronsim import CronSim

        start = datetime.fromtimestamp(math.floor(t), self.zone())
        return next(CronSim(self.cron, start)).timestamp()

    def latest(self, now: float, since: float, limit: int) -> list[float]:
        """Fire times in ``[since, now]``, the latest ``limit`` of them, oldest first."""
        if self.every is not None:
            last = math.floor(now) // self.every * self.every
            first = max(-(-math.ceil(since) // self.every) * self.every,
                        last - (limit - 1) * self.every)
            return [float(t) for t in range(first, last + 1, self.every)]
        from cronsim import CronSim

        found: list[float] = []
        start = datetime.fromtimestamp(math.floor(now) + 1, self.zone())
        for moment in CronSim(self.cron, start, reverse=True):
            t = moment.timestamp()
            if t < since or len(found) >= limit:
                break
            found.append(t)
        return found[::-1]

    def firing(self, next_at: float, now: float) -> Firing:
        """Which times to fire at ``now``, the next fire time being stored as ``next_at``."""
        if now < next_at:
            return Firing([], next_at)
        limit = MAX_CATCH_UP if self.misfire == "all" else 1
        times = self.latest(now, next_at, limit)
        if self.misfire == "skip" and times and now - times[-1] > GRACE:
            times = []
        return Firing(times, self.next_after(now))

    def job_id(self, fire_at: float) -> str:
        return job_id(self.name, fire_at)

    def ttls(self) -> dict[str, float]:
        """The ttls given, as ``enqueue_call`` keywords: one not given keeps the queue's."""
        from .retention import given

        return given(self.result_ttl, self.failure_ttl)

    def to_json(self) -> str:
        spec = {"name": self.name, "task": self.task, "args": list(self.args),
                "kwargs": self.kwargs, "tz": self.tz, "misfire": self.misfire,
                "overlap": self.overlap}
        # A cron schedule writes what it wrote before intervals existed: no "every" key.
        spec.update({"cron": self.cron} if self.every is None else {"every": self.every})
        spec.update(self.ttls())  # only if given: a jobq before them reads the rest as it was
        return json.dumps(spec, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        """The schedule :meth:`to_json` wrote; InvalidSchedule if ``text`` is not one."""
        try:
            fields = json.loads(text)
            fields["args"] = tuple(fields.get("args", ()))
            return cls(**fields)
        except InvalidSchedule:
            raise
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidSchedule(f"a stored schedule cannot be read ({exc}): {text[:200]!r};"
                                  " remove it (jobq schedule remove) and add it again",
                                  name=None) from exc


class Stored(NamedTuple):
    """A schedule as storage holds it: with its next fire time and its last firing's job."""

    schedule: Schedule
    next_at: float
    last_job: str | None


def interval_text(seconds: int) -> str:
    """``300`` -> ``"5m"``: the largest unit that divides it, as jobq.cli.inputs.parse_duration
    reads it back."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _seconds(name: str, every: object) -> int:
    """An interval as whole seconds, at least one; InvalidSchedule otherwise."""
    if isinstance(every, timedelta):
        seconds: object = every.days * 86400 + every.seconds if not every.microseconds else None
    elif isinstance(every, (int, float)) and not isinstance(every, bool):
        seconds = int(every) if float(every).is_integer() else None
    else:
        raise InvalidSchedule(f"schedule {name!r}: every must be a timedelta or a number of"
                              f" seconds, not {every!r}", name=name)
    if not isinstance(seconds, int) or seconds < 1:
        raise InvalidSchedule(f"schedule {name!r}: every must be a whole number of seconds, at"
                              f" least 1, not {every!r}", name=name)
    return seconds


def _ttl(name: str, field: str, value: object) -> float | None:
    """A ttl as stored (seconds, or None: not given); InvalidSchedule otherwise."""
    from .retention import check_ttl

    try:
        return check_ttl(field, value)
    except InvalidJob as exc:
        raise InvalidSchedule(f"schedule {name!r}: {exc}", name=name) from exc


def job_id(name: str, fire_at: float) -> str:
    """The id of the job of schedule ``name`` firing at ``fire_at``: the same in every worker."""
    moment = datetime.fromtimestamp(fire_at, timezone.utc)
    return f"{PREFIX}{name}:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def read_stored(rows: Any, unreadable: list[tuple[str, str]] | None = None) -> list[Stored]:
    """The schedules of stored ``(name, spec, next_at, last_job)`` rows. A row that cannot be
    read is skipped with a warning (``schedule.unreadable``) and added to ``unreadable`` as
    (name, why): one bad row must not stop every other schedule from firing."""
    found = []
    for name, spec, next_at, last_job in rows:
        try:
            found.append(Stored(Schedule.from_json(spec), float(next_at), last_job))
        except (InvalidSchedule, TypeError, ValueError) as exc:
            get_logger(__name__).warning("schedule.unreadable", name=name, error=str(exc))
            if unreadable is not None:
                unreadable.append((name, str(exc)))
    return found
