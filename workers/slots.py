"""One child process, as its supervisor keeps track of it."""

from __future__ import annotations

import os
import signal
from typing import Any

from jobq import Queue

from . import child_process, forked
from .board import Board
from .config import WorkerConfig
from .forked import Child, Connection

WAKE = ("wake",)  # to an idle child: look for jobs now (None: stop)


class Slot:
    """A child process, the owner name its claims carry, and its board.

    ``cancel_seen`` is the attempt (job id, token) the supervisor saw asked to cancel, and
    when it first saw it: the child is killed once the cancel grace has passed since then;
    ``kill_reason`` says why we killed the child, if we did; ``wake_missed``, that jobs may
    have come while it was busy (it is woken when it next says it is idle). A plain class: a
    dataclass costs some 2 M instructions to build at every worker's start (issue 19).
    """

    __slots__ = ("process", "conn", "board", "owner", "idle", "cancel_seen", "kill_reason",
                 "wake_missed")

    def __init__(self, process: Child, conn: Connection, board: Board, owner: str) -> None:
        self.process, self.conn, self.board, self.owner = process, conn, board, owner
        self.idle = False
        self.cancel_seen: tuple[str, int, float] | None = None
        self.kill_reason: str | None = None
        self.wake_missed = False

    def wake(self) -> None:
        """Tell an idle child that jobs may be ready. A busy one is told when it says it is
        idle: it may have looked for jobs just before they were committed."""
        if not self.idle:
            self.wake_missed = True
            return
        self.wake_missed = False
        try:
            self.conn.send(WAKE)
        except (OSError, ValueError):
            pass  # it died: noticed by its sentinel

    def kill(self, reason: str) -> None:
        """SIGKILL the child; its death is handled like any other, knowing it was us."""
        self.kill_reason = reason
        if self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)

    def request_stop(self) -> None:
        """Stop after the job running now; claims not started are given back."""
        self.board.request_stop()
        try:
            self.conn.send(None)  # wakes a child waiting for work
        except (OSError, ValueError):
            pass


def start(queue: Queue, inherited_fds: list[int], owner: str, config: WorkerConfig,
          logger: Any) -> Slot:
    """Fork a child that claims jobs as ``owner``."""
    parent_end, child_end = forked.pipe()
    board = Board()
    process = forked.fork(child_process.main, (child_end, queue, os.getpid(), inherited_fds,
                                               board, owner, config, logger))
    child_end.close()
    return Slot(process, parent_end, board, owner)


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
    slot.request_stop()
    slot.process.join(timeout)
    if slot.process.is_alive():
        slot.kill("stopping")
        slot.process.join(5)
    slot.conn.close()
    slot.board.close()
