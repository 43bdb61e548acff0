"""The engine's part of retention: how long ended jobs are kept (:mod:`jobq.retention`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Retention"]


class Retention(Protocol):
    """Expiry times of ended jobs, recorded with the job and purged by an index on that time."""

    def keep_for(self, job_ids: Sequence[str], result_ttl: float | None,
                 failure_ttl: float | None) -> None:
        """Record how long these jobs are kept once ended (:mod:`jobq.retention`), replacing
        what was recorded for them (it may become durable only with the next commit: losing it
        keeps the jobs for ever, never purges one early); a job that has already ended gets its expiry
        from its end time. Called before the jobs' records are stored, or after."""

    def expire(self, limit: int) -> int:
        """Purge up to ``limit`` jobs past their expiry on the engine's clock, by an index
        on that time, in one short transaction (a parent whose dependents have not all ended
        is kept :data:`jobq.retention.PARENT_GRACE` longer); how many."""
