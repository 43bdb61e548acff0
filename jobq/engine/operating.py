"""What operators run (the CLI, :mod:`jobq.maintenance`, the dashboard's actions), and the
storage chores a worker's supervisor runs for them between its other duties."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..state import Status

__all__ = ["Operating", "Upkeep"]


class Operating(Protocol):
    """Acting on jobs by hand, purging, and the storage's own maintenance."""

    def cancel(self, job_id: str) -> bool: ...
    def requeue(self, job_id: str) -> bool: ...
    def purge(self, statuses: frozenset[Status], updated_before: float) -> int: ...
    def purge_jobs(self, ids: Sequence[str], statuses: frozenset[Status]) -> int:
        """Delete those of ``ids`` in one of the finished ``statuses`` (others are left as
        they are); how many. A batch of ids per transaction."""

    def damage(self) -> list[dict[str, Any]]:
        """Ranges of stored records found damaged and set aside (none where it cannot happen)."""

    def compact(self) -> Any:
        """Free the space purged jobs left, for good; a report of what was done."""

    def verify(self) -> Any:
        """Read every stored record and state: a report of what cannot be read (jobq verify)."""

    def backup(self, dest: str) -> Any:
        """A consistent copy at ``dest``, taken while the queue is in use; InvalidArgument
        where the engine's own tools make backups."""

    def old_keys_pending(self) -> int:
        """How many old secret keys may still have signed something stored."""

    def rekey(self) -> Any:
        """Re-sign with the current key what old keys signed (jobq rekey)."""

    def share(self, group: str | int) -> str:
        """Share the queue with a group of users; return its location, to open it again."""


class Upkeep(Protocol):
    """Storage chores a worker's supervisor runs between its other duties, a bounded piece at a
    time, so that it is never long away from its children."""

    busy: bool  # a chore is under way that a burst worker should let finish

    def step(self, *, children_busy: bool) -> None:
        """One bounded piece; errors are logged, never raised (jobs come first)."""

    def close(self) -> None: ...
