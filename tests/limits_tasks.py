"""Tasks of the limits tests: each counts the jobs inside it at once, under a file lock."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


def _bump(path: str, step: int) -> int:
    """Add ``step`` to the count in ``path`` (under its lock); record the highest count seen
    in ``path``.max; return the new count."""
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        inside = int(Path(path).read_text()) if os.path.exists(path) else 0
        inside += step
        with open(path, "w") as f:
            f.write(str(inside))
        if step > 0:
            seen = int(Path(path + ".max").read_text()) if os.path.exists(path + ".max") else 0
            if inside > seen:
                with open(path + ".max", "w") as f:
                    f.write(str(inside))
        return inside


def inside_for(path: str, seconds: float) -> int:
    """Count itself in for ``seconds``; return how many were inside when it came in."""
    inside = _bump(path, 1)
    try:
        time.sleep(seconds)
    finally:
        _bump(path, -1)
    return inside


def highest(path: str) -> int:
    """The most jobs ever inside at once."""
    return int(Path(path + ".max").read_text()) if os.path.exists(path + ".max") else 0


def hold_until(marker: str, release: str, limit: float = 60.0) -> str:
    """Create ``marker``, then wait until ``release`` exists (a job that holds its slot)."""
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return marker
