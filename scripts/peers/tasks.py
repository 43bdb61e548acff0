"""The job every system runs, in a module of its own so that every system's consumer imports it."""

from __future__ import annotations


def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the job."""


def noop_with(_pad: bytes) -> None:
    """The same, for a system that passes a job's arguments to its task (jobq): the padding that
    makes its payload as big as the others' (about 300 bytes) is its argument."""


def mark_and_sleep(mark: str) -> None:
    """Append "pid time" to the file ``mark`` as the job starts, then sleep (until killed): the
    job of the SIGKILL measurements."""
    import os
    import time

    with open(mark, "a") as out:
        out.write(f"{os.getpid()} {time.time()}\n")
    time.sleep(3600)
