"""The periodic schedules a queue stores (:mod:`jobq.schedule` says what they are)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # only for annotations: a worker starts without jobq.schedule (issue 19)
    from ..schedule import Schedule, Stored

__all__ = ["Schedules"]


class Schedules(Protocol):
    """The queue's periodic schedules (:mod:`jobq.schedule`), each with its next fire time.

    ``advance`` is a compare-and-set: of workers that fire the same time at once, exactly one
    moves the schedule on, so the next fire time is durable and never taken twice.
    """

    def put(self, schedule: Schedule, next_at: float) -> None:
        """Store ``schedule``, replacing one of its name; a replaced schedule keeps its next
        fire time unless its cron expression or time zone changed."""

    def remove(self, name: str) -> bool:
        """Forget the schedule; False if there was none of that name."""

    def all(self) -> list[Stored]:
        """Every schedule, by name; one that cannot be read is skipped, with a warning."""

    def unreadable(self) -> list[tuple[str, str]]:
        """The stored schedules that cannot be read: (name, why), for ``jobq schedule list``."""

    def advance(self, name: str, expected_next: float, new_next: float,
                last_job: str | None = None) -> bool:
        """Set the next fire time to ``new_next`` (and the last firing's job, if given) only if
        it is still ``expected_next``; True if this call did."""
