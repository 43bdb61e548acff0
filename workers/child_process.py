"""A worker child's process: what a forked child does before its :class:`~.child.Runner` runs.

It ties its life to its supervisor's (the kernel kills it if the supervisor dies), lets go of the
supervisor's liveness lock, ignores SIGINT and SIGTERM (its supervisor decides when it stops; the
processes its tasks fork do not),
collects garbage less often, and opens its own queue connection (waiting through an outage).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from typing import Any

from jobq import Queue
from jobq.errors import JobqError

from .board import Board
from .child import Runner
from .config import WorkerConfig
from .forked import Connection
from .outage import Outage, call_through

PR_SET_PDEATHSIG = 1
# Objects a child makes (net of those freed) before the collector runs (CPython's default: 700).
# A batch's claimed rows, states and events, thousands of objects freed with the batch, set it off
# every 700 and it walked them for nothing: a drain of 20,000 no-op jobs on PostgreSQL ran 247
# collections, 1.7 us of the child's CPU a job (3%); at 10,000, none.
GC_THRESHOLD = 10_000


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when our parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def collect_less() -> None:
    """Let GC_THRESHOLD objects pile up between collections, unless the application's
    threshold is higher already (or collection is off)."""
    first, *rest = gc.get_threshold()
    if 0 < first < GC_THRESHOLD:
        gc.set_threshold(GC_THRESHOLD, *rest)


def default_signals() -> None:
    """In a process a task forks, SIGINT and SIGTERM do what they do in any Python program
    again: ignored there, as in this child, what stops such processes with SIGTERM (as
    ``multiprocessing.Pool.terminate()`` does) would wait for them for ever."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(conn: Connection, queue: Queue, parent_pid: int, inherited_fds: list[int], board: Board,
         owner: str, config: WorkerConfig, logger: Any) -> None:
    """Entry point of a forked child; returns when told to stop or when the pipe closes."""
    die_with_parent(parent_pid)
    collect_less()
    for fd in inherited_fds:  # the supervisor's liveness lock, above all
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.register_at_fork(after_in_child=default_signals)
    # Claims take in the backlog a batch at a time. A child started in an outage waits for it.
    own = call_through(Outage(logger), lambda: queue.reopen(catch_up=False),
                       board.stop_requested)
    if own is None:
        return
    runner = Runner(conn, own, board, owner, config, logger)
    try:
        runner.run()
    except JobqError as exc:  # a permanent storage error: the supervisor stops with it
        runner.send(("error", exc))
    finally:
        runner.close()
        own.close()
