"""What a worker says about itself, as ``jobq workers`` and ``Queue.workers()`` show it: the
same on every engine, which keeps the records (see :meth:`jobq.engine.Workers.read`).

A record is a dict (JSON in a queue directory)::

    {"format": 1, "id", "host", "pid", "started", "queue", "version", "concurrency",
     "heartbeat", "heartbeat_interval",
     "children": [{"n", "pid", "job_id" (null: idle), "since" (wall clock, null: idle)}],
     dead entries only: "reaped_at", "reaped_by", "jobs" (ids it held when found dead)}

Whether a worker lives is the engine's liveness hold, never its heartbeat; an old heartbeat under
a live hold marks the worker ``stuck`` (its supervisor loop stopped turning).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .engine.workers import worker_of
from .errors import JobNotFound

if TYPE_CHECKING:
    from .engine import Engine


MIN_STUCK = 10.0  # a heartbeat older than this (and than 5 intervals) marks a live worker stuck


class WorkerState(str, enum.Enum):
    """What became of a worker. ``str`` so it prints and compares as its value."""

    LIVE = "live"  # holds its lock, heartbeat fresh
    STUCK = "stuck"  # holds its lock, heartbeat old: its loop stopped turning
    DEAD = "dead"  # its lock is free; its jobs are reclaimed when a live worker looks
    REAPED = "reaped"  # found dead by a live worker, which reclaimed what it held

    def __str__(self) -> str:
        return self.value

    @property
    def alive(self) -> bool:
        return self in (WorkerState.LIVE, WorkerState.STUCK)


@dataclass(frozen=True)
class ChildInfo:
    """One child process of a worker, as of its last heartbeat."""

    n: int
    pid: int | None
    job_id: str | None  # None: idle
    since: float | None  # wall clock the job started
    task: str | None = None  # from the store, when the job is still there


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """A worker as its record and its lock show it. Fields it never published are None."""

    id: str
    state: WorkerState
    host: str | None = None
    pid: int | None = None
    started: float | None = None
    heartbeat: float | None = None
    heartbeat_interval: float | None = None
    concurrency: int | None = None
    queue: str | None = None
    version: str | None = None
    children: tuple[ChildInfo, ...] = ()
    held: tuple[str, ...] = ()  # running jobs claimed by it (reaped: the ones it held then)
    reaped_at: float | None = None
    reaped_by: str | None = None

    @property
    def alive(self) -> bool:
        return self.state.alive


def stuck(heartbeat: float | None, interval: float | None, now: float) -> bool:
    """Is a heartbeat too old for a worker that beats every ``interval`` seconds?"""
    if heartbeat is None:
        return False  # nothing to judge by: the lock says alive
    return now - heartbeat > max(MIN_STUCK, 5 * (interval or 0.0))


def info_from_record(worker_id: str, record: dict[str, Any], state: WorkerState) -> WorkerInfo:
    """A WorkerInfo from a record, taking only fields of the right type (a record is input)."""
    children = []
    for child in record.get("children") or ():
        if isinstance(child, dict) and isinstance(child.get("n"), int):
            job_id = child.get("job_id")
            children.append(ChildInfo(child["n"], _int(child.get("pid")),
                                      job_id if isinstance(job_id, str) else None,
                                      number(child.get("since"))))
    jobs = record.get("jobs")
    return WorkerInfo(
        id=worker_id, state=state, host=_str(record.get("host")), pid=_int(record.get("pid")),
        started=number(record.get("started")), heartbeat=number(record.get("heartbeat")),
        heartbeat_interval=number(record.get("heartbeat_interval")),
        concurrency=_int(record.get("concurrency")), queue=_str(record.get("queue")),
        version=_str(record.get("version")), children=tuple(children),
        held=tuple(j for j in jobs if isinstance(j, str)) if isinstance(jobs, list) else (),
        reaped_at=number(record.get("reaped_at")), reaped_by=_str(record.get("reaped_by")))


def from_id(worker_id: str) -> dict[str, Any]:
    """Host and pid from a worker id (``<host>-<pid>-<random>``), for a worker without a record."""
    parts = worker_id.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return {"host": parts[0], "pid": int(parts[1])}
    return {}


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def workers_of(engine: Engine, now: float) -> list[WorkerInfo]:
    """The engine's worker records (:meth:`jobq.engine.Workers.read`), with the jobs each
    worker holds and the task each child runs (``Queue.workers()``)."""
    held: dict[str, list[str]] = {}
    for claim in engine.held():
        if claim.owner:
            held.setdefault(worker_of(claim.owner), []).append(claim.job_id)
    found = []
    for info in engine.workers.read(now, owners=held):
        if info.state is not WorkerState.REAPED:
            info = replace(info, held=tuple(sorted(held.get(info.id, ()))),
                           children=tuple(_with_task(c, engine) for c in info.children))
        found.append(info)
    return found


def _with_task(child: ChildInfo, engine: Engine) -> ChildInfo:
    if child.job_id is None:
        return child
    try:
        return replace(child, task=engine.row(child.job_id)["task"])
    except JobNotFound:  # purged since
        return child
