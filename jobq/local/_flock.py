"""A blocking, fair-enough inter-process lock for hot paths (one log append, one SQLite write).

``filelock`` opens the lock file and polls ``flock(LOCK_NB)`` with sleeps on every acquire; measured
here that costs about 75 µs per uncontended acquire and release, against about 3 µs for a blocking
``flock`` on a descriptor kept open (``/tmp/lockbench.py`` in the closing note of issue 2). An append
costs one fsync (about 165 µs), so filelock would add almost half to every enqueue. ``filelock`` stays
the tool for locks taken rarely; this one guards the two critical sections taken per job.

The kernel releases the lock when the holder dies, so a SIGKILLed holder never wedges the queue.
"""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType

from .permissions import open_file


_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """A number that changes in a forked child: cheaper than comparing ``os.getpid()``, a system
    call (about 0.35 µs here) that the append path would otherwise make three times per record."""
    return _fork_generation


class ProcessLock:
    """An exclusive lock shared by threads of this process and by other processes, via ``flock``."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._generation = -1
        self._fd = -1
        self._thread_lock = threading.Lock()
        self._ensure_open()

    def _ensure_open(self) -> None:
        # flock belongs to the open file description, which a forked child shares with its parent:
        # the child must open its own, or parent and child would both "hold" the lock at once.
        if self._generation != _fork_generation:
            self._fd = open_file(self._path)  # owner-only, or shared in a shared queue
            self._generation = _fork_generation
            self._thread_lock = threading.Lock()

    def acquire(self) -> None:
        if self._generation != _fork_generation:
            self._ensure_open()
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def shared(self, size: int) -> bytes:
        """The first ``size`` bytes of the lock file itself (zeros past its end): a place for
        holders to tell one another things. Read and change them only while holding the lock;
        they are not durable, and matter only to processes alive together."""
        if self._generation != _fork_generation:
            self._ensure_open()
        got = os.pread(self._fd, size, 0)
        return got if len(got) == size else got.ljust(size, b"\0")

    def set_shared(self, data: bytes, at: int = 0) -> None:
        """Change bytes of :meth:`shared`, while holding the lock."""
        os.pwrite(self._fd, data, at)

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def close(self) -> None:
        if self._fd >= 0 and self._generation == _fork_generation:
            os.close(self._fd)
        self._fd = -1
        self._generation = -1
