"""How a worker's supervisor hears of new jobs and cancels without asking storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["CancelWatch", "NoWakeups", "Wakeups"]


class Wakeups(Protocol):
    """A worker supervisor's ear for new jobs, so that its idle children need not keep asking
    storage: when it hears of some, the supervisor wakes them (one per worker, not per child)."""

    def fileno(self) -> int | None:
        """A descriptor that turns readable when something may have been heard, to wait on
        with the children's pipes; None when there is nothing to wait on now."""

    def heard(self) -> bool:
        """Take in what arrived, without blocking: True if idle children should look now."""

    def cancels(self) -> bool:
        """True if a running job may have been asked to cancel since the last call: the
        supervisor then looks at once, instead of at its next ``reap_interval``."""

    def close(self) -> None: ...


class NoWakeups:
    """:class:`Wakeups` of storage that nothing can be heard from: its idle workers poll."""

    def fileno(self) -> int | None:
        return None

    def heard(self) -> bool:
        return False

    def cancels(self) -> bool:
        return False

    def close(self) -> None:
        pass


class CancelWatch(NoWakeups):
    """:class:`Wakeups` of storage whose cancel number is cheap to read (a queue directory's
    shared memory): nothing to hear of new jobs, but a cancel is seen at the supervisor's next
    turn."""

    def __init__(self, generation: Callable[[], int]) -> None:
        self._generation = generation
        self._seen = generation()

    def cancels(self) -> bool:
        seen, self._seen = self._seen, self._generation()
        return seen != self._seen
