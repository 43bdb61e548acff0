"""A worker child: runs the jobs its supervisor sends over a pipe, one at a time, in order.

A child is forked, so tasks imported by the supervisor are already loaded. It ties its life to
its supervisor's (the kernel kills it if the supervisor dies), lets go of the supervisor's
liveness lock, ignores SIGINT and SIGTERM (its supervisor decides when it stops), and opens its own
queue connection. Checkpoints are written by the child itself, durably, before ``ctx.save``
returns; the outcome of an attempt goes back to the supervisor, which records it.

Messages: supervisor -> child: a list of :class:`jobq.store.Claim`, run in order (the first
ones to arrive first), or None to stop once they have run. child -> supervisor, per claim:
``("started", job_id, timeout)`` when the job has a time limit, then
``("done", job_id, token, Outcome)``. The job after a reported one is the one running.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection

from jobq import Queue
from jobq.errors import JobqError
from jobq.execution import execute, failure, load
from jobq.store import Claim

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when our parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def main(conn: Connection, queue: Queue, parent_pid: int, inherited_fds: list[int]) -> None:
    """Entry point of a forked child; returns when told to stop or when the pipe closes."""
    die_with_parent(parent_pid)
    for fd in inherited_fds:  # the supervisor's liveness lock, above all
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    own = queue.reopen()
    try:
        while True:
            try:
                claims = conn.recv()
            except EOFError:
                return
            if claims is None:
                return
            for claim in claims:
                run(conn, own, claim)
    finally:
        own.close()


def run(conn: Connection, own: Queue, claim: Claim) -> None:
    """Run one claim and report how it ended (and, first, its time limit if it has one)."""
    try:
        payload, fn = load(own.log, claim, own.config.rules)
    except JobqError as exc:
        conn.send(("done", claim.job_id, claim.token, failure(f"cannot load job: {exc}")))
        return
    if payload.timeout is not None:
        conn.send(("started", claim.job_id, payload.timeout))
    outcome = execute(own.store, claim, payload, fn)
    try:
        conn.send(("done", claim.job_id, claim.token, outcome))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        # send() pickles the whole message before writing a byte: nothing half-sent.
        conn.send(("done", claim.job_id, claim.token, failure(
            f"the task's return value cannot be stored: {exc}", outcome.duration)))
