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


def note_then_wait(path: str, tag: str, release: str, limit: float = 60.0,
                   lock: str | None = None) -> str:
    """Appends ``<tag> <pid>`` to ``path`` (one write per run, so runs are counted across
    processes), then waits until ``release`` exists (at once if it does). With ``lock``, a file
    it holds ``flock``ed meanwhile (a queue's state.lock: no state change can commit)."""
    import fcntl
    import os
    import time
    if lock is not None:
        held = os.open(lock, os.O_RDWR)  # closed with the process: the lock goes with it
        fcntl.flock(held, fcntl.LOCK_EX)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{tag} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    if lock is not None:
        os.close(held)
    return tag


def cancel_job_named_in(queue_path: str, id_file: str) -> bool:
    """Asks to cancel the job whose id ``id_file`` holds (a job claimed behind this one)."""
    from pathlib import Path

    from jobq import Queue
    with Queue(queue_path) as queue:
        return queue.cancel(Path(id_file).read_text())


def parents_seen(tag: str) -> tuple[str, list[object]]:
    """Returns its tag with the results of the jobs it depends on (current_job().parent_results)."""
    from jobq import current_job
    return tag, current_job().parent_results


def note_then(path: str, tag: str, value: object) -> object:
    """Appends ``tag`` to ``path`` (the order jobs ran in, across processes), returns ``value``."""
    import os
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return value
