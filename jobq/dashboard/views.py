"""What each page shows, read from a queue through the engine seam: data only, no markup.

Lists read index columns (nothing unpickled); only a job's own page loads its state and its
payload, the one place they are shown. Every read is bounded: pages by key, counts capped.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument, JobNotFound, JobqError
from ..listing import SCAN_LIMIT, ROUGH_CAP
from ..queue import Queue
from ..schedule import PREFIX, Schedule
from ..state import JobState, Status
from ..worker_info import WorkerInfo

PAGE = 50
MINUTES = 60  # the overview's chart: jobs ended per minute, this many minutes
RECENT = 10  # dead jobs shown on the overview
SHORT = 300  # characters of a value shown before "show all"
LONG = 100_000  # characters of a value shown at most


@dataclass(frozen=True)
class Activity:
    """Jobs that ended per minute over the last hour, oldest minute first: ``start`` is the
    first minute's start; a series whose reading stopped at its bound is ``capped``."""

    start: float
    series: dict[str, list[int]]  # "succeeded" and "dead": one count per minute
    capped: frozenset[str]


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    oldest_due: float | None
    workers: list[WorkerInfo]
    failures: list[dict[str, Any]]
    now: float
    activity: Activity | None = None


def overview(q: Queue) -> Overview:
    # Dead jobs only: jobs waiting for a retry have no index of their own on PostgreSQL, and
    # finding the newest among a million queued ones would read them all on every refresh.
    now = time.time()
    return Overview(q.engine.rough_counts(), q.engine.oldest_due(), q.workers(),
                    q.engine.rows(Status.DEAD, RECENT), now, activity(q, now))


def activity(q: Queue, now: float) -> Activity:
    """Succeeded and dead jobs per minute, the last :data:`MINUTES` minutes (this one
    included), each series read up to ROUGH_CAP finish times (Engine.finish_times)."""
    start = (now // 60 - (MINUTES - 1)) * 60
    series, capped = {}, set()
    for status in (Status.SUCCEEDED, Status.DEAD):
        times = q.engine.finish_times(status, start, ROUGH_CAP)
        counts = [0] * MINUTES
        for t in times:
            counts[min(MINUTES - 1, max(0, int((t - start) // 60)))] += 1
        series[status.value] = counts
        if len(times) >= ROUGH_CAP:
            capped.add(status.value)
    return Activity(start, series, frozenset(capped))


@dataclass(frozen=True)
class Filters:
    """A jobs page's query: what the filter form and the "next page" link carry."""

    status: Status | None = None
    task: str = ""
    id_contains: str = ""
    oldest_first: bool = False
    after: str | None = None
    group: str = ""  # a q.map group's id: its members only

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filters:
        status = query.get("status") or None
        if status is not None and status not in {s.value for s in Status}:
            raise InvalidArgument(f"no status {status!r}: one of"
                                  f" {', '.join(s.value for s in Status)}")
        order = query.get("order") or "newest"
        if order not in ("newest", "oldest"):
            raise InvalidArgument(f"order is newest or oldest, not {order!r}")
        return cls(Status(status) if status else None, query.get("task", "").strip(),
                   query.get("q", "").strip(), order == "oldest", query.get("after") or None,
                   query.get("group", "").strip())

    def query(self, **changes: Any) -> dict[str, Any]:
        values = {"status": self.status.value if self.status else None, "task": self.task,
                  "q": self.id_contains, "order": "oldest" if self.oldest_first else None,
                  "group": self.group or None, "after": self.after}
        values.update(changes)
        return values


@dataclass(frozen=True)
class JobList:
    filters: Filters
    rows: list[dict[str, Any]]
    next_after: str | None  # the key of the next page; None: this is the last
    now: float
    searched: int = 0  # the filter read this many jobs and stopped short (next_after: go on)


def jobs(q: Queue, filters: Filters, page: int = PAGE) -> JobList:
    """A page of the list; a filter no index answers reads :data:`SCAN_LIMIT` jobs at most,
    and a page it left short says so and links on (a million jobs are never read at once)."""
    found = q.engine.rows(filters.status, page + 1, not filters.oldest_first,
                          after=filters.after, task=filters.task or None,
                          id_contains=filters.id_contains or None,
                          group=filters.group or None, scan_limit=SCAN_LIMIT)
    if len(found) > page:
        return JobList(filters, found[:page], found[page - 1]["job_id"], time.time())
    resume = getattr(found, "resume", None)
    return JobList(filters, list(found), resume, time.time(), SCAN_LIMIT if resume else 0)


@dataclass(frozen=True)
class Shown:
    """A value from a job, as text: its type, a short form and (cut at LONG) all of it."""

    kind: str
    short: str
    full: str

    @classmethod
    def of(cls, value: Any) -> Shown:
        try:
            text = repr(value)
        except Exception as exc:  # a user's __repr__: show that it failed, not a 500
            text = f"<repr failed: {type(exc).__name__}: {exc}>"
        full = text if len(text) <= LONG else text[:LONG] + f"... ({len(text):,} characters)"
        one_line = " ".join(text.split())
        short = one_line if len(one_line) <= SHORT else one_line[:SHORT - 3] + "..."
        return cls(type(value).__name__, short, full)


@dataclass(frozen=True)
class JobPage:
    row: dict[str, Any]
    state: JobState | None
    payload: dict[str, Any] | None  # task, args and options, values as Shown
    problems: list[str] = field(default_factory=list)
    now: float = 0.0
    parents: list[tuple[str, str]] = field(default_factory=list)  # (id, status or "purged")


def job(q: Queue, job_id: str) -> JobPage:
    """One job: its index row (JobNotFound if there is none), its state and its payload; a
    state or payload that cannot be loaded is a problem shown on the page, not an error."""
    row, problems = q.engine.row(job_id), []
    state = payload = None
    try:
        state = q.state(job_id)
    except JobqError as exc:
        problems.append(f"state: cannot load: {exc}")
    try:
        p = q.payload(job_id)
        payload = {"args": Shown.of(p.args), "kwargs": Shown.of(p.kwargs),
                   "priority": p.priority, "max_attempts": p.max_attempts,
                   "timeout": p.timeout, "created_at": p.created_at}
    except JobqError as exc:
        problems.append(f"payload: cannot load: {exc}")
    return JobPage(row, state, payload, problems, time.time(),
                   [(p, _status_of(q, p)) for p in q.engine.parents(job_id)])


def _status_of(q: Queue, job_id: str) -> str:
    """A parent's status, as ``jobq show`` says it: "purged" once it is gone."""
    try:
        return q.engine.status(job_id).value
    except JobNotFound:
        return "purged"


@dataclass(frozen=True)
class ScheduleRow:
    """A schedule as its page shows it: the last firing's job read from its index row only."""

    schedule: Schedule
    next_at: float
    last_job: str | None
    last_at: float | None  # the fire time the last job's id names
    last_status: str | None  # None: never fired; "gone": its job was purged


def schedules(q: Queue) -> tuple[list[ScheduleRow], float]:
    """Every schedule, by name, and the time read: one index row per schedule, no unpickling."""
    found = []
    for s in q.engine.schedules.all():
        status = None
        if s.last_job is not None:
            try:
                status = q.engine.row(s.last_job)["status"]
            except JobNotFound:
                status = "gone"
        found.append(ScheduleRow(s.schedule, s.next_at, s.last_job, fired_at(s.last_job),
                                 status))
    return found, time.time()


def fired_at(job_id: str | None) -> float | None:
    """The fire time in a periodic job's id (``periodic:<name>:<UTC time>``); None if it has
    none."""
    if job_id is None or not job_id.startswith(PREFIX):
        return None
    _, _, stamp = job_id[len(PREFIX):].partition(":")  # a schedule's name has no ":"
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()
