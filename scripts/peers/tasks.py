"""The job every system runs, in a module of its own so that every system's consumer imports it."""

from __future__ import annotations


def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the job."""
