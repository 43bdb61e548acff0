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
