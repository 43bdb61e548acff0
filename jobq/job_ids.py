"""Job ids: made by the client, so that a write whose outcome is unknown can be retried with
the same ids, and checked when a caller gives one."""

from __future__ import annotations

import os
import time

from .errors import InvalidJob

MAX_JOB_ID = 200


class JobIds:
    """New job ids: 32 hex digits, the wall clock in nanoseconds then 64 random bits.

    Ids made later sort later, so the jobs a worker claims together sit side by side in the state
    database's indexes: a commit of a hundred finished jobs writes a few pages, not a hundred
    scattered ones. The random half keeps ids unique across processes and machines; it is drawn
    256 at a time (one ``os.urandom`` per job is one system call per enqueue). ``list.pop`` is
    atomic, so threads never get the same bits; a forked child drops the ones it inherited,
    which its parent still holds.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._random: list[str] = []

    def next(self) -> str:
        while True:
            try:
                return f"{time.time_ns():016x}{self._random.pop()}"
            except IndexError:  # used up (another thread may refill it first: no matter)
                digits = os.urandom(8 * self.BATCH).hex()
                self._random = [digits[i:i + 16] for i in range(0, len(digits), 16)]

    def drop(self) -> None:
        self._random = []


job_ids = JobIds()
os.register_at_fork(after_in_child=job_ids.drop)


def check_job_id(job_id: object) -> None:
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID \
            or not job_id.isprintable():
        raise InvalidJob(f"job id must be 1 to {MAX_JOB_ID} printable characters, not {job_id!r}")
