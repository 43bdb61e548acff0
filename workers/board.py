"""A child's board: what it is running, in memory shared with its supervisor.

A child claims, runs and records its own jobs in batches, so its supervisor never hears of each
job. The board tells it what it needs without a message per job: which claim is running since
when, and with what time limit (to kill an attempt that overruns, or that ignores a cancellation;
and, when the child dies, to charge that attempt and give back the claims it never started). The
supervisor writes one thing back: a request to stop (which the running task sees as
``ctx.stopping``).

One writer per field, so a sequence counter is enough (a seqlock): the child makes it odd while
it writes and even when done; the supervisor reads until it sees the same even count before and
after.
"""

from __future__ import annotations

import math
import mmap
import struct
import time
from typing import NamedTuple

# seq, running, token, started (monotonic), timeout (NaN: none), id length; then the id; then the
# stop flag, which only the supervisor writes.
_HEAD = struct.Struct("<QBqddH")
_SEQ = struct.Struct("<Q")  # the counter alone (made once: the child writes it twice a write)
_BODY = struct.Struct("<BqddH")  # the rest of the head, after the counter
_IDLE = _BODY.pack(0, 0, 0.0, math.nan, 0)  # between jobs: the same bytes every time
_ID_MAX = 1024  # job ids are at most 200 characters, 4 bytes each in UTF-8 at worst
_STOP = _HEAD.size + _ID_MAX


class Running(NamedTuple):
    """The claim a child is running, as its board shows it."""

    job_id: str
    token: int
    started: float  # time.monotonic() of the child, which is the supervisor's clock too
    timeout: float | None


class Board:
    """Shared memory made before the fork, so the child and its supervisor see the same bytes."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and shared across fork()
        self._seq = 0

    # -- the child's side --------------------------------------------------------------------

    def running(self, job_id: str, token: int, timeout: float | None = None) -> None:
        """The child starts ``job_id`` (or learns its time limit, once its payload is loaded)."""
        name = job_id.encode()[:_ID_MAX]
        self._write(_BODY.pack(1, token, time.monotonic(), math.nan if timeout is None
                               else timeout, len(name)) + name)

    def time_limit(self, job_id: str, token: int, timeout: float) -> None:
        """The running job's time limit, counted from when it started."""
        current = self.read()
        started = current.started if current is not None else time.monotonic()
        name = job_id.encode()[:_ID_MAX]
        self._write(_BODY.pack(1, token, started, timeout, len(name)) + name)

    def idle(self) -> None:
        self._write(_IDLE)

    def _write(self, body: bytes) -> None:
        """Write the head after its counter, and the id, as one copy between the counter made
        odd and made even (twice a job: a copy, not a field at a time, issue 19)."""
        self._seq += 2
        mem, seq = self._mem, self._seq
        _SEQ.pack_into(mem, 0, seq - 1)  # odd: being written
        mem[_SEQ.size:_SEQ.size + len(body)] = body
        _SEQ.pack_into(mem, 0, seq)

    def stop_requested(self) -> bool:
        return self._mem[_STOP] != 0

    # -- the supervisor's side ---------------------------------------------------------------

    def read(self) -> Running | None:
        """What the child is running now, or None between jobs."""
        while True:
            seq, running, token, started, timeout, size = _HEAD.unpack_from(self._mem, 0)
            name = bytes(self._mem[_HEAD.size:_HEAD.size + size])
            again = _SEQ.unpack_from(self._mem, 0)[0]
            if seq == again and not seq % 2:
                break
            time.sleep(0)  # the child is writing: a few instructions, let it finish
        if not running:
            return None
        return Running(name.decode(errors="replace"), token, started,
                       None if math.isnan(timeout) else timeout)

    def request_stop(self) -> None:
        self._mem[_STOP] = 1

    def close(self) -> None:
        self._mem.close()
