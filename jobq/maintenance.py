"""Maintenance an operator runs: purge old finished jobs, compact what they leave behind, verify
that every stored job can be read, back the queue up.

Argument checks live here; what purging and compacting mean is the engine's (for a queue
directory: :mod:`jobq.local.purging` and :mod:`jobq.local.compaction`, where compaction frees the log
records of purged jobs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument
from .state import FINISHED, Status
from ._logging import get_logger

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["backup", "compact", "purge", "rekey", "verify"]

log = get_logger(__name__)


def purge(queue: Queue, *, statuses: Iterable[Status], older_than: float,
          now: float | None = None) -> int:
    """Delete jobs in ``statuses`` that finished more than ``older_than`` seconds ago.

    ``updated_at`` is set by a job's final transition and never after, so it is its finishing
    time. Returns how many jobs were deleted; their stored records go at the next :func:`compact`.
    """
    wanted = _finished_statuses(statuses)
    if not isinstance(older_than, (int, float)) or isinstance(older_than, bool) \
            or not math.isfinite(older_than) or older_than < 0:
        raise InvalidArgument(f"older_than must be a number of seconds >= 0, not {older_than!r}")
    cutoff = (queue.engine.now() if now is None else now) - older_than  # updated_at's clock
    total = queue.engine.purge(frozenset(Status(s) for s in wanted), cutoff)
    log.info("maintenance.purged", count=total, statuses=wanted, older_than=older_than)
    return total


def compact(queue: Queue) -> Any:
    """Free the space of purged jobs for good; return the engine's report of what it did."""
    return queue.engine.compact()


def rekey(queue: Queue) -> Any:
    """Re-sign with the current secret key what old keys signed, so they can be dropped."""
    return queue.engine.rekey()


def verify(queue: Queue) -> Any:
    """Check that every stored job and state can be read; return the engine's report."""
    return queue.engine.verify()


def backup(queue: Queue, dest: str | os.PathLike[str]) -> Any:
    """Copy the queue, consistently and while it is in use, to the new location ``dest``."""
    return queue.engine.backup(os.fspath(dest))


def _finished_statuses(statuses: Iterable[Status]) -> list[str]:
    if isinstance(statuses, str):  # one status (Status is a str too), not its characters
        statuses = [statuses]
    try:
        found = [Status(s) for s in statuses]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"statuses must be job statuses: {exc}") from exc
    refused = [s.value for s in found if s not in FINISHED]
    if refused or not found:
        allowed = ", ".join(sorted(s.value for s in FINISHED))
        raise InvalidArgument(f"purge deletes only finished jobs ({allowed}); got"
                              f" {', '.join(refused) or 'no status'}")
    return sorted({s.value for s in found})
