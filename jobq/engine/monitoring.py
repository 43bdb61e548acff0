"""What monitors read (the dashboard, ``jobq status``): cheap, bounded figures, by index seeks,
never a count of a million rows."""

from __future__ import annotations

from typing import Protocol

from ..state import Status

__all__ = ["Monitoring"]


class Monitoring(Protocol):
    """Bounded figures about the queue, and the running totals (:mod:`jobq.totals`)."""

    def rough_counts(self) -> dict[str, int]:
        """Jobs per status, each counted up to :data:`jobq.listing.ROUGH_CAP` only: a count
        of that is "that many or more", and a monitor never counts a million rows. Where no
        index finds a status, the engine may count it among the first rows only (PostgreSQL:
        failed jobs due for their retry, among the first ready jobs)."""

    def oldest_due(self) -> float | None:
        """Seconds the longest-waiting due job has waited (None: none waits), by index seeks:
        the oldest by arrival of each priority, so a delayed job may have waited longer."""

    def next_waiting(self, now: float) -> dict[Status, float]:
        """The earliest run-at time after ``now`` of queued jobs (delayed) and of failed jobs
        (waiting for their retry), each present only if there is one: by index seeks in run-at
        order over the jobs not yet due, never over the jobs ready to run."""

    def finish_times(self, status: Status, since: float, limit: int) -> list[float]:
        """When jobs that ended in the finished ``status`` ended, those at or after ``since``,
        newest first, ``limit`` at most (a chart of the last hour). Where no index orders
        finished jobs by that time, the engine may look among its newest ``limit`` jobs of
        the status by arrival only (the directory engine)."""

    def totals(self) -> dict[tuple[str, str], float]:
        """The running totals (:mod:`jobq.totals`): (name, task) -> count or seconds, stored
        and added to with each recorded batch, so they only grow (but see the engines' notes
        on an index rebuilt)."""
