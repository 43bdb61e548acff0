"""Is a worker alive? A lock the OS releases the moment its holder dies answers at once.

Each worker holds ``<queue>/workers/<worker id>.lock`` with ``flock`` for its whole life. Another
worker that can take that lock knows the holder is dead (SIGKILL, OOM kill, power loss) and
reclaims its jobs: measured on this machine, the lock is free about 1 ms after the holder dies,
where a lease would have to run out first. Leases stay as the backstop for a worker that is alive
but stuck.

A child forked while the lock is held shares it (flock belongs to the open file description):
children close the inherited descriptor first thing, or a dead supervisor would look alive for as
long as an orphaned child runs.
"""

from __future__ import annotations

import fcntl
import os
import socket


from jobq import durable, permissions
from jobq._logging import get_logger

log = get_logger(__name__)

DIR = "workers"


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def worker_of(owner: str) -> str:
    """The worker id in a claim's owner (``<worker id>/<child>``; older claims: the id alone)."""
    return owner.split("/", 1)[0]


def _path(queue_root: str, worker_id: str) -> str:
    return os.path.join(queue_root, DIR, f"{worker_id}.lock")


class LivenessLock:
    """The lock a worker holds while it lives."""

    def __init__(self, queue_root: str, worker_id: str) -> None:
        durable.make_dir(os.path.join(queue_root, DIR))
        self.path = _path(queue_root, worker_id)
        self.fd = -1
        self._take()

    def _take(self) -> None:
        self.fd = permissions.open_file(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

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
