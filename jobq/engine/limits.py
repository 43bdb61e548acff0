"""Concurrency and rate limits per key, and the keys of jobs, as a queue stores them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a dataclass: built where a limit is read or set, not at every start
    from ..limits import Limit

__all__ = ["Limits"]


class Limits(Protocol):
    """Concurrency and rate limits per key, and the keys of jobs (:mod:`jobq.limits`).

    Claims honour the limits in the transaction that claims: a job whose key is full is not
    claimed (it stays queued, no attempt spent). A queue with no limit set pays nothing for
    them on the claim path beyond one cheap look.
    """

    def put(self, limit: Limit) -> None:
        """Store ``limit``, replacing the key's; it applies from the next claim on."""

    def remove(self, key: str) -> bool:
        """Forget the key's limits (its jobs run unlimited); False if it had none."""

    def all(self) -> list[Limit]:
        """Every key's limits, by key."""

    def append_keyed(self, frame: bytes, job_id: str, concurrency_key: str | None,
                     unique_key: str | None) -> str:
        """Store one framed job with its keys, durably; return the id of the job stored, or,
        nothing stored, that of the job holding ``unique_key`` that has not ended (race-safe:
        two producers at once get the same id). A ``job_id`` already stored keeps its first
        record (and is returned)."""
