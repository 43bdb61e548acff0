"""Tasks used by scripts/bench_worker.py (importable by reference from worker processes)."""

from __future__ import annotations

import time

from jobq import current_job


def noop() -> None:
    return None


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def now() -> float:
    return time.time()


def timed_saves(count: int) -> list[float]:
    """Durable checkpoints in a loop; returns the seconds each ctx.save took."""
    ctx = current_job()
    times = []
    for i in range(count):
        start = time.perf_counter()
        ctx.save(i, progress=i / count)
        times.append(time.perf_counter() - start)
    return times
