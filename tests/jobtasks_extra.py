"""More module-level tasks for the worker failure and shutdown tests (importable from children)."""

from __future__ import annotations


def touch(path: str) -> str:
    """A visible side effect: creates ``path``, so a test can tell whether the job ran."""
    with open(path, "w"):
        pass
    return path


def vanishing() -> str:
    """A task a test deletes from this module after enqueueing it, so it cannot be loaded."""
    return "still here"


def mark_then_wait(marker: str, release: str, limit: float = 60.0) -> str:
    """Creates ``marker`` (the job started), then waits until ``release`` exists."""
    import os
    import time
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return marker
