"""A worker child's process: what a forked child does before its :class:`~.child.Runner` runs.

It ties its life to its supervisor's (the kernel kills it if the supervisor dies), lets go of the
supervisor's liveness lock, does nothing on SIGINT and SIGTERM (its supervisor decides when it
stops; the processes its tasks start take them as usual: see :func:`hold_shutdown_signals`),
collects garbage less often, and opens its own queue connection (waiting through an outage).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import threading
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


SHUTDOWN_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_held = threading.local()  # .mask: the forking thread's signal mask before the fork, or None
_holder = 0  # the pid of the process that holds them


def hold_shutdown_signals() -> None:
    """Do nothing on SIGINT and SIGTERM in this process, and only in it.

    A Ctrl-C reaches the whole process group and systemd's stop the whole cgroup, but a child
    finishes its job unless its supervisor stops it. The processes its task starts must still
    take both as any program does, or whatever stops them with SIGTERM, as
    ``multiprocessing.Pool.terminate()`` does, waits for them for ever:

    - caught by a handler that does nothing, not ignored: ``exec`` (``subprocess``, a spawn or
      forkserver Pool's workers) resets a caught signal to its default, and keeps an ignored one;
    - held (blocked) over each ``os.fork``: the forked process puts the defaults back, then
      takes a signal sent to it in between. Reset while ignored, a Pool's SIGTERM sent before
      the reset was lost and its terminate() waited for ever: in each of three runs of 600
      ``with Pool(2)`` on a busy machine.
    """
    global _holder
    _holder = os.getpid()
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, _nothing)
        signal.siginterrupt(sig, False)  # SA_RESTART: the system calls it interrupts go on
    os.register_at_fork(before=_block, after_in_parent=_unblock, after_in_child=_defaults)


def _nothing(signum: int, frame: object) -> None:
    """The child's handler of SIGINT and SIGTERM."""


def _block() -> None:
    # Not in the processes a task forked (the hooks are theirs too): their handlers are theirs.
    _held.mask = (signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
                  if os.getpid() == _holder else None)


def _unblock() -> None:
    if _held.mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _held.mask)


def _defaults() -> None:
    """In a process the child forks: the handlers of any Python program, then the signals held
    since the fork."""
    if _held.mask is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _unblock()


def main(conn: Connection, queue: Queue, parent_pid: int, inherited_fds: list[int], board: Board,
         owner: str, config: WorkerConfig, logger: Any) -> None:
    """Entry point of a forked child; returns when told to stop or when the pipe closes."""
    die_with_parent(parent_pid)
    collect_less()
    for fd in inherited_fds:  # the supervisor's liveness lock, above all
        os.close(fd)
    hold_shutdown_signals()
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
