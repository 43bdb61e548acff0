"""Tasks of the group tests (q.map): importable by worker processes (tests/ is on their path)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jobq import Queue, current_job


def square(x: int) -> int:
    return x * x


def square_unless(x: int, bad: int = 3) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * x


def fail_on_3(x: int) -> int:
    return square_unless(x, 3)


def gather_into(group_id: str, location: str, out: str) -> int:
    """A final step: gather the group (errors in place) and append one line to ``out``.
    ``O_APPEND`` lines: a second run shows as a second line."""
    with Queue(location) as q:
        results = q.gather(group_id, timeout=60, return_exceptions=True)
    line = json.dumps({"group": group_id, "pid": os.getpid(),
                       "results": [r if isinstance(r, int) else "error" for r in results]})
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return len(results)


def note_then(group_id: str, out: str) -> str:
    """A final step that only notes that it ran (one line per run)."""
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (group_id + "\n").encode())
    finally:
        os.close(fd)
    return group_id


def identity(x: Any) -> Any:
    return x


def slow_square(x: int) -> int:
    time.sleep(0.002)
    return x * x


def check_then(group_id: str, location: str, out: str) -> int:
    """A final step that records, as it starts, how many members had ended (all of them, if
    it was let go when it should be) and its attempt (a run again after a SIGKILL is a
    higher attempt of the same job, not a second release)."""
    with Queue(location) as q:
        st = q.group(group_id)
    line = json.dumps({"attempt": current_job().attempt, "finished": st.finished,
                       "jobs": st.jobs, "ended": st.ended})
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return st.finished
