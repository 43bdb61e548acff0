"""The engine's part of workflows: jobs that wait for other jobs (:mod:`jobq.dependencies`)
and groups of jobs with a final job (``q.map``: :mod:`jobq.groups`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

__all__ = ["Workflows"]


class Workflows(Protocol):
    """Dependencies and groups: each end of a job that others wait for is counted in the
    transaction that records that end, so nothing above the seam polls for it."""

    # -- dependencies (jobq.dependencies) -----------------------------------------------------
    def append_dependent(self, frame: bytes, job_id: str, parents: Sequence[str],
                         policy: str) -> None:
        """Store one framed job that depends on ``parents`` (job ids, in order) with
        ``policy`` (:mod:`jobq.dependencies`), durably: ``waiting`` until they end, or at once
        due or cancelled if they have. UnknownParent, and nothing stored, if a parent does not
        exist; nothing either if ``job_id`` does (its first record wins). Every later end of a
        parent releases or cancels the job in the transaction that records that end."""

    def parents(self, job_id: str) -> list[str]:
        """The job's parents in ``depends_on`` order (none if it depends on nothing)."""

    # -- groups (q.map: jobq.groups; member ids say their group, see jobq.group_ids) ---------
    def open_group(self, group_id: str, chunk_size: int, then: tuple[str, bytes] | None) -> None:
        """Store a new group, open (its number of members unknown), durably, with its final
        job (``then``: its id and frame) waiting until the group is done."""

    def append_members(self, batches: Iterable[tuple[Sequence[bytes], int]]) -> None:
        """Store a group's members as ``append_batches`` does, in memory as flat as the
        engine allows: in one commit, or in several durable ones (say which)."""

    def close_group(self, group_id: str, jobs: int, items: int) -> None:
        """The group has ``jobs`` members, all stored: done at once if as many ended already.
        From then on, the end of the last member (counted in the transaction that records
        each end, once per move into a finished status) makes the final job due."""

    def group(self, group_id: str) -> dict[str, Any]:
        """The group's row (chunk_size, jobs, items, ended, then_job, created_at, done_at)
        and its members' ``counts`` by status; GroupNotFound if there is no such group."""
