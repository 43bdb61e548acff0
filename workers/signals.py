"""SIGTERM and SIGINT: the first asks for a graceful stop, the second for an immediate one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from jobq._logging import get_logger


log = get_logger(__name__)


class StopRequests:
    """Counts stop requests; the worker loop reads it between steps (handlers only set flags)."""

    def __init__(self) -> None:
        self.count = 0
        self._reasons: list[str] = []
        self._logged = 0

    @property
    def graceful(self) -> bool:
        return self.count >= 1

    @property
    def immediate(self) -> bool:
        return self.count >= 2

    def request(self, reason: str = "asked") -> None:
        # No logging here: a signal handler that logs while the interrupted code holds the log's
        # lock (a blocked write to stderr) would wait for itself forever. log_requests() logs.
        self._reasons.append(reason)
        self.count += 1

    def log_requests(self) -> None:
        """Log the requests not logged yet; called by the worker loop, never by a handler."""
        while self._logged < len(self._reasons):
            self._logged += 1
            log.warning("worker.stopping", reason=self._reasons[self._logged - 1],
                        mode="immediately" if self._logged >= 2 else "gracefully")


@contextmanager
def handled(stops: StopRequests) -> Iterator[None]:
    """Route SIGTERM and SIGINT to ``stops`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread; its owner handles them
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stops.request(signal.Signals(signum).name)

    previous: dict[int, Callable[..., object] | int | None] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
