"""Who works on a queue: each worker's liveness hold and the records ``jobq workers`` shows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # jobq.worker_info's dataclasses are built where workers are read
    from ..worker_info import WorkerInfo

__all__ = ["Liveness", "Workers", "owner_of", "worker_of"]

MAX_DEAD = 100  # dead workers remembered, newest first
KEEP_DEAD = 86400.0  # seconds a dead worker is remembered


def owner_of(worker: str, slot: int) -> str:
    """The owner name of a worker's claims: ``<worker>/<slot>``; slot 0 is the supervisor's
    own. Engines match a worker's claims and its children's by this prefix."""
    return worker if slot == 0 else f"{worker}/{slot}"


def worker_of(owner: str) -> str:
    """The worker id in a claim's owner (``<worker id>/<child>``; older claims: the id alone)."""
    return owner.split("/", 1)[0]


class Liveness(Protocol):
    """Held by a worker's supervisor for as long as it lives: while it is held, the worker is
    alive to every other process of the queue."""

    def check(self) -> None:
        """Re-assert the hold; a JobqError if it was lost (the worker must stop claiming)."""

    def fds_to_close_after_fork(self) -> list[int]:
        """Descriptors a forked child must close, or the worker would outlive its supervisor."""

    def close(self) -> None:
        """Let go: from now on the worker is dead to the others."""


class Workers(Protocol):
    """Who works on a queue: liveness holds, and the records ``jobq workers`` shows."""

    def hold(self, worker: str) -> Liveness: ...

    def is_dead(self, worker: str) -> bool: ...

    def publish(self, record: dict[str, Any]) -> None: ...

    def withdraw(self, worker: str) -> None: ...

    def bury(self, worker: str, *, by: str, jobs: Iterable[str], now: float) -> bool: ...

    def recorded(self) -> list[str]: ...

    def read(self, now: float, owners: Iterable[str] = ()) -> list[WorkerInfo]: ...
