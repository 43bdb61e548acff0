"""One child process and the job it is running, as the supervisor keeps track of them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from jobq import Queue
from jobq.store import Claim

from . import child

_FORK = multiprocessing.get_context("fork")


@dataclass
class Slot:
    """A child process and what it is doing. ``kill_reason`` says why we killed it, if we did."""

    process: BaseProcess
    conn: Connection
    claim: Claim | None = None
    sent_at: float = 0.0
    timeout: float | None = None
    cancel_seen_at: float | None = None
    kill_reason: str | None = None

    @property
    def busy(self) -> bool:
        return self.claim is not None

    def send(self, claim: Claim) -> None:
        # Hold the claim before sending: if sending fails, the caller releases it from here.
        self.claim, self.sent_at, self.timeout = claim, time.monotonic(), None
        self.cancel_seen_at = self.kill_reason = None
        self.conn.send(claim)

    def clear(self) -> None:
        # kill_reason stays: a child killed just after it reported its job is an expected death.
        self.claim = None
        self.timeout = self.cancel_seen_at = None

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
