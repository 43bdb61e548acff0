"""A job's timeline, from what the engines store: data only, no markup (see pages.job).

The engines keep the job's arrival, its last attempt's start, its last change and end, and one
error text per failed or interrupted attempt (:class:`jobq.state.JobState`), not the times of
earlier attempts: those appear in order, without a time, each with its cause (the last line of
its traceback, or what interrupted it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..state import JobState, Status
from ..totals import INTERRUPTED

__all__ = ["Event", "timeline"]


@dataclass(frozen=True)
class Event:
    """One step: ``outcome`` is a status-like word (a CSS class too); for a failed attempt,
    ``cause`` is its error's one line and ``error`` the error's place in ``JobState.errors``
    (the page shows its traceback there)."""

    what: str
    at: float | None
    outcome: str = ""
    cause: str = ""
    error: int | None = None


def cause_of(error: str) -> str:
    """An error text's one line: an interruption's text, or a traceback's last line."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "(no error text)"
    return lines[0] if INTERRUPTED.match(lines[0]) else lines[-1]


def _attempt(n: int, error: str, at: float | None = None) -> Event:
    kind = "interrupted" if INTERRUPTED.match(error.strip()) else "failed"
    return Event(f"attempt {n} {kind}", at, kind, cause_of(error), n - 1)


def timeline(row: dict[str, Any], state: JobState | None) -> list[Event]:
    """The job's steps in order: enqueued, each attempt's end (the last one's start too), then
    where it is now (running, due again, or how it finished)."""
    events = [Event("enqueued", row["enqueued_at"], "queued")]
    status = Status(row["status"])
    if state is None:  # its state cannot be loaded: the row only
        return events + [Event(f"now {status.value}", row["updated_at"], status.value)]
    errors = list(state.errors)
    last_failed = status in (Status.FAILED, Status.DEAD) and bool(errors)
    earlier = errors[:-1] if last_failed else errors
    events += [_attempt(i + 1, text) for i, text in enumerate(earlier)]
    n = len(earlier) + 1
    started = state.started_at
    if started is not None and (status is not Status.QUEUED or errors):
        events.append(Event(f"attempt {n} started", started, "running"))
    if status is Status.RUNNING:
        events.append(Event(f"attempt {n} running ({int(state.progress * 100)}%)",
                            row["updated_at"], "running"))
    elif last_failed:
        events.append(_attempt(n, errors[-1], state.finished_at or row["updated_at"]))
        if status is Status.FAILED:
            events.append(Event("due again", row["run_at"], "queued"))
    elif status is Status.SUCCEEDED:
        events.append(Event(f"attempt {n} succeeded", state.finished_at, "succeeded"))
    elif status is Status.WAITING:
        events.append(Event("waiting for the jobs it depends on", row["updated_at"], "waiting"))
    elif status is Status.QUEUED and row["run_at"] > row["enqueued_at"]:
        events.append(Event("due", row["run_at"], "queued"))
    if status.finished:
        events.append(Event(f"finished: {status.value}",
                            state.finished_at or row["updated_at"], status.value,
                            state.error or "" if status is Status.CANCELLED else ""))
    # attempts are numbered by their error texts: one per failed or interrupted attempt
    return events
