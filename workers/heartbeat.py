"""A worker's heartbeat: its record among the queue's workers (see :meth:`jobq.engine.Workers.publish`;
in a queue directory, ``<queue>/workers/<id>.json``), rewritten by the supervisor every
``heartbeat_interval`` seconds.

It costs nothing per job: the supervisor reads what each child runs from the children's boards,
as it does anyway to enforce time limits, and writes one small record (a file, no fsync) on its own clock.
The heartbeat never decides whether the worker lives (its liveness lock does); an old heartbeat
under a held lock tells a worker whose loop is stuck.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from jobq import __version__
from jobq.engine import Workers

from .slots import Slot


class Heartbeat:
    """The record one worker publishes while it runs, and removes when it exits cleanly."""

    def __init__(self, registry: Workers, location: str, worker_id: str, *, concurrency: int,
                 interval: float, logger: Any) -> None:
        self.registry, self.worker_id, self.interval, self._log = (registry, worker_id, interval,
                                                                   logger)
        self._about = {"id": worker_id, "host": os.uname().nodename, "pid": os.getpid(),
                       "started": time.time(), "queue": location, "version": __version__,
                       "concurrency": concurrency, "heartbeat_interval": interval}
        self._failing = False

    def beat(self, slots: Sequence[Slot]) -> None:
        """Publish the record now, with what each child runs; a failure is logged, not raised
        (a full disk must not stop the jobs)."""
        wall, mono = time.time(), time.monotonic()
        children = []
        for slot in slots:
            running = slot.board.read()
            children.append({
                "n": int(slot.owner.rsplit("/", 1)[1]), "pid": slot.process.pid,
                "job_id": None if running is None else running.job_id,
                # The board's clock is monotonic (shared with the children): said as wall time.
                "since": None if running is None else wall - (mono - running.started)})
        try:
            self.registry.publish({**self._about, "heartbeat": wall, "children": children})
        except OSError as exc:
            if not self._failing:
                self._log.warning("worker.heartbeat_failed", error=str(exc))
            self._failing = True
        else:
            self._failing = False

    def withdraw(self) -> None:
        """Remove the record: this worker exits cleanly (call it before releasing the lock)."""
        try:
            self.registry.withdraw(self.worker_id)
        except OSError as exc:
            self._log.warning("worker.record_not_removed", error=str(exc))
