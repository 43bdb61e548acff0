"""One child process and the job it is running, as the supervisor keeps track of them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from jobq import Queue
from jobq.store import Claim

from . import child

_FORK = multiprocessing.get_context("fork")


# A child holds at most this much expected work beyond the job it runs: enough to stay busy
# through the supervisor's commit (a few ms), little enough that a job which suddenly runs long
# keeps few others waiting behind it.
PREFETCH_WINDOW = 0.02


@dataclass
class Slot:
    """A child process and the claims it holds, in the order it runs them.

    The first claim is running (or about to); the others were prefetched and have not started.
    ``kill_reason`` says why we killed the child, if we did.
    """

    process: BaseProcess
    conn: Connection
    claims: deque[Claim] = field(default_factory=deque)
    started_at: float = 0.0  # when the first claim started running
    timeout: float | None = None
    cancel_seen_at: float | None = None
    kill_reason: str | None = None
    not_started: set[str] = field(default_factory=set)  # prefetched claims marked so in the store
    average: float | None = None  # moving average of job durations, to size prefetching

    @property
    def busy(self) -> bool:
        return bool(self.claims)

    @property
    def claim(self) -> Claim | None:
        """The claim the child is running (or about to)."""
        return self.claims[0] if self.claims else None

    def wanted(self, prefetch: int) -> int:
        """How many more claims to send: none until half of what the child holds has run."""
        if self.average is None:
            limit = 1  # no prefetching before we know the jobs are short
        else:
            limit = max(1, min(prefetch, int(PREFETCH_WINDOW / max(self.average, 1e-6))))
        held = len(self.claims)
        return limit - held if held <= limit // 2 else 0

    def send(self, claims: list[Claim], not_started: set[str]) -> None:
        # Hold the claims before sending: if sending fails, the caller releases them from here.
        if not self.claims:
            self.started_at, self.timeout = time.monotonic(), None
            self.cancel_seen_at = self.kill_reason = None
        self.claims.extend(claims)
        self.not_started |= not_started
        self.conn.send(claims)

    def finished(self, job_id: str, duration: float) -> Claim | None:
        """The child reports its first claim done; return it, or None if that is not the one."""
        if not self.claims or self.claims[0].job_id != job_id:
            return None
        self.average = duration if self.average is None else 0.8 * self.average + 0.2 * duration
        claim = self.claims.popleft()
        self.started_at, self.timeout, self.cancel_seen_at = time.monotonic(), None, None
        return claim

    def kill(self, reason: str) -> None:
        """SIGKILL the child; its death is handled like any other, knowing it was us."""
        self.kill_reason = reason
        if self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)


def start(queue: Queue, inherited_fds: list[int]) -> Slot:
    """Fork a child ready to take jobs."""
    parent_end, child_end = _FORK.Pipe()
    process = _FORK.Process(target=child.main, name="jobq-child", daemon=True,
                            args=(child_end, queue, os.getpid(), inherited_fds))
    process.start()
    child_end.close()
    return Slot(process, parent_end)


def death_cause(exitcode: int | None) -> str:
    """What the OS says about how a child ended."""
    if exitcode is None:
        return "the child process vanished"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            return f"the process running it was killed by {name} (out of memory, or killed)"
        return f"the process running it was killed by {name}"
    return f"the process running it exited with status {exitcode}"


def stop(slot: Slot, timeout: float = 5.0) -> None:
    """Ask a child to stop, then make sure it has, and reap it."""
    try:
        slot.conn.send(None)
    except (OSError, ValueError):
        pass
    slot.process.join(timeout)
    if slot.process.is_alive():
        slot.kill("stopping")
        slot.process.join(5)
    slot.conn.close()
