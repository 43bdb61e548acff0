"""A worker child's watcher: a thread that keeps a long job from holding up the rest of its batch.

A child claims a batch of jobs sized to about ``window`` seconds of expected work and records
their outcomes with its next claim (see :mod:`workers.child`). When one job of the batch runs
longer than the window, the claims behind it would wait for it while other children may be idle,
and the jobs that finished before it would stay ``running`` until it ends (issue 15). So would
they behind a batch of jobs that run much longer than the ones before them. The watcher notices
both, the job running past ``window`` or the batch past twice that, and calls ``hand_back``
once for the batch: the child then records the outcomes so far and gives back the claims it has
not started, on a connection of the watcher's own.

A batch of short jobs ends before either moment: the watcher then costs the main thread one
short lock per batch and no wake-up per job. During a batch it wakes only when the job running or
the batch would overrun; between batches, once a window while they keep coming, else not at all.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jobq.errors import JobqError

from .board import Board

SWITCH_INTERVAL = 50e-6  # seconds: see _switching_often


class Watcher:
    """Calls ``hand_back(batch)`` from its own thread when the watched batch overruns.

    ``batch`` is the object the main thread gave :meth:`watch` (the child's claims not started
    yet, which it takes from as it starts them).
    """

    def __init__(self, board: Board, hand_back: Callable[[Any], None], window: float, *,
                 prepare: Callable[[], object] | None = None) -> None:
        self._board = board
        self._hand_back = hand_back
        self._prepare = prepare
        self._window = window
        self._cond = threading.Condition(threading.Lock())
        self._batch: Any = None  # the batch in progress, None between batches
        self._began = 0.0  # when it began (time.monotonic(), the board's clock)
        self._handed: Any = None  # the batch last handed back: once is enough
        self._batches = 0  # batches watched so far
        self._parked = False  # waiting for a batch, with no time limit
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="jobq-watcher", daemon=True)
        self._thread.start()

    def watch(self, batch: Any) -> None:
        """The main thread starts ``batch``."""
        with self._cond:
            self._batch, self._began = batch, time.monotonic()
            self._batches += 1
            # Only a parked watcher needs waking: a sleeping one wakes no later than a window
            # from now, before this batch can be due, and looks again then.
            if self._parked:
                self._cond.notify()

    def done(self) -> None:
        """The main thread ended its batch."""
        self._batch = None  # one store: no lock, the watcher reads it under its own

    def close(self) -> None:
        """Stop the thread; waits for a hand-back in progress to finish."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        if self._prepare is not None:
            try:
                self._prepare()
            except JobqError:
                pass  # the hand-back tries again, and reports what fails then
        seen = -1
        with self._cond:
            while not self._closed:
                batch = self._batch
                if batch is None or batch is self._handed:
                    if seen != self._batches:
                        # Batches keep coming: look again in a window rather than be woken
                        # by the next one (a wake-up per batch costs the main thread the GIL).
                        seen = self._batches
                        self._cond.wait(self._window)
                        continue
                    self._parked = True
                    self._cond.wait()
                    self._parked = False
                    continue
                wait = self._due() - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._handed = batch
                self._cond.release()  # the main thread may start its next batch meanwhile
                try:
                    with _switching_often():
                        self._hand_back(batch)
                finally:
                    self._cond.acquire()

    def _due(self) -> float:
        """When the batch in progress overruns: its job running for ``window``, or itself for
        twice that."""
        running = self._board.read()
        # Between two jobs, the next one to start cannot overrun before a window from now.
        started = time.monotonic() if running is None else running.started
        return min(started + self._window, self._began + 2 * self._window)


@contextmanager
def _switching_often() -> Iterator[None]:
    """Get the GIL back within 50 µs instead of Python's 5 ms, while handing back.

    A task computing in Python holds the GIL; the hand-back gives it up at every SQLite call and
    then waits a switch interval to have it back. Measured here next to such a task: a hand-back
    of a few jobs took about 20 ms at 5 ms, 4 ms at 50 µs. The interval only matters while
    threads contend, so the task loses nothing once the hand-back is done.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
