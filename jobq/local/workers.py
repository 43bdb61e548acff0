"""Who works on a queue directory: liveness locks, and the workers' records.

Is a worker alive? A lock the OS releases the moment its holder dies answers at once.

Each worker holds ``<queue>/workers/<worker id>.lock`` with ``flock`` for its whole life. Another
worker that can take that lock knows the holder is dead (SIGKILL, OOM kill, power loss) and
reclaims its jobs: measured on this machine, the lock is free about 1 ms after the holder dies,
where a lease would have to run out first. Leases stay as the backstop for a worker that is alive
but stuck.

A child forked while the lock is held shares it (flock belongs to the open file description):
children close the inherited descriptor first thing, or a dead supervisor would look alive for as
long as an orphaned child runs.

Next to the lock each worker keeps a record of itself, with a heartbeat (see
:mod:`jobq.worker_records` and :mod:`workers.heartbeat`): it says what the worker does, never
whether it lives. Whoever finds a worker dead buries its record in the history of dead workers.
"""

from __future__ import annotations

import fcntl
import os
import time

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import durable, permissions, worker_records
from .._logging import get_logger
from .worker_records import DIR, lock_path as _path

if TYPE_CHECKING:  # built where workers are read, not as a worker starts
    from ..worker_info import WorkerInfo

__all__ = ["LivenessLock", "LocalWorkers", "is_dead"]

log = get_logger(__name__)

TAKE_TRIES = 1000  # a millisecond apart: see LivenessLock._take


class LivenessLock:
    """The lock a worker holds while it lives."""

    def __init__(self, queue_root: str, worker_id: str) -> None:
        durable.make_dir(os.path.join(queue_root, DIR))
        self.path = _path(queue_root, worker_id)
        self.fd = -1
        self._take()

    def _take(self) -> None:
        self.fd = permissions.open_file(self.path)
        for attempt in range(TAKE_TRIES):
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                # Someone probes this file (jobq workers, for an instant): the id is ours
                # alone, so no one else can hold it for longer. Give up after a second.
                if attempt == TAKE_TRIES - 1:
                    os.close(self.fd)
                    raise
                time.sleep(0.001)

    def check(self) -> None:
        """Re-take the lock if its file was removed under us (others would think us dead)."""
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                return
        except FileNotFoundError:
            pass
        log.warning("worker.liveness_file_replaced", path=self.path)
        os.close(self.fd)
        self._take()

    def fds_to_close_after_fork(self) -> list[int]:
        return [self.fd]

    def close(self) -> None:
        """Give up the lock on a clean exit (after this worker's jobs were released)."""
        if self.fd >= 0:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = -1


def is_dead(queue_root: str, worker_id: str) -> bool:
    """True if ``worker_id`` no longer holds its lock (its lock file is then removed)."""
    path = _path(queue_root, worker_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # it exited, or died and was reaped already
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        os.unlink(path)  # while holding it: no live worker can be holding this file
    except FileNotFoundError:
        pass
    os.close(fd)
    return True


class LocalWorkers:
    """The ``Workers`` of a queue directory: ``<queue>/workers/<id>.lock`` and ``<id>.json``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def hold(self, worker: str) -> LivenessLock:
        return LivenessLock(self.root, worker)

    def is_dead(self, worker: str) -> bool:
        return is_dead(self.root, worker)

    def publish(self, record: dict[str, Any]) -> None:
        worker_records.publish(self.root, record)

    def withdraw(self, worker: str) -> None:
        worker_records.withdraw(self.root, worker)

    def bury(self, worker: str, *, by: str, jobs: Iterable[str], now: float) -> bool:
        return worker_records.bury(self.root, worker, by=by, jobs=jobs, now=now)

    def recorded(self) -> list[str]:
        return worker_records.recorded(self.root)

    def read(self, now: float, owners: Iterable[str] = ()) -> list[WorkerInfo]:
        return worker_records.read(self.root, now, owners)
