"""Fetching single records of the job log (:mod:`jobq.local.log`) by their positions.

Its own module beside :mod:`.log_read`, which scans the log from a position: these read the
records the index points at (a job's payload when it starts, a claimed batch's at once), each
verified as a scan verifies it. They are :class:`~jobq.local.log.Log`'s methods, bound in its
class body.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import record
from ..errors import CorruptRecord, DamagedRecord
from .log_read import Position, _read_fd

if TYPE_CHECKING:
    from .log import Log


def read(self: Log, pos: Position, *, recheck: bool = True) -> record.Frame:
    """Read and verify the single record at ``pos`` (to load one job's payload).

    ``recheck=False`` skips making sure a cached descriptor still names the segment's file
    (one stat per read): for a caller that can tell a record that moved (compaction renames
    a rewritten segment over the old one) and then reads again with the check.
    """
    try:
        data = _pread(self, pos.segment, 4096, pos.offset, recheck)
        try:
            return record.decode(data, 0, key=self._key, max_body=self._max_body,
                                 old_keys=self._verify[0], any_signer=self._verify[1])
        except record.Incomplete as exc:
            if exc.needed is None:
                raise
            data = _pread(self, pos.segment, exc.needed, pos.offset, recheck)
            return record.decode(data, 0, key=self._key, max_body=self._max_body,
                                 old_keys=self._verify[0], any_signer=self._verify[1])
    except (record.Damaged, record.Incomplete) as exc:
        reason = str(exc) if isinstance(exc, record.Damaged) else "truncated"
        raise DamagedRecord(f"record at {self.path(pos.segment)}:{pos.offset} is unreadable:"
                            f" {reason}", path=self.path(pos.segment), offset=pos.offset,
                            reason=reason) from exc


def read_many(self: Log, positions: Sequence[Position]) -> list[record.Frame | None]:
    """The records at ``positions``, verified as :func:`read` verifies one, with one pread per
    run of nearby records instead of one per record (a worker child claims a batch of jobs
    enqueued together, whose records lie end to end). None for a record not read so: one that
    is damaged, or spans past what was read, or in a segment that cannot be read; the caller
    reads it alone with :func:`read`, which says what is wrong.
    """
    frames: list[record.Frame | None] = [None] * len(positions)
    order = sorted(range(len(positions)), key=positions.__getitem__)
    run: list[int] = []
    for i in [*order, -1]:
        if run and (i < 0 or positions[i].segment != positions[run[0]].segment
                    or positions[i].offset - positions[run[0]].offset > _MANY_SPAN):
            _read_run(self, positions, run, frames)
            run = []
        run.append(i)
    return frames


_MANY_SPAN = 1 << 20  # bytes of log read at once at most, beside the last record's 4096


def _read_run(self: Log, positions: Sequence[Position], run: list[int],
              frames: list[record.Frame | None]) -> None:
    first, last = positions[run[0]], positions[run[-1]]
    try:
        data = _pread(self, first.segment, last.offset - first.offset + 4096, first.offset,
                      recheck=False)
    except (CorruptRecord, OSError):  # a missing segment, an I/O error: read() says so for
        return  # each record, when its job starts (not here, after the claim's commit)
    for i in run:
        try:
            frames[i] = record.decode(data, positions[i].offset - first.offset, key=self._key,
                                      max_body=self._max_body, old_keys=self._verify[0],
                                      any_signer=self._verify[1])
        except (record.Damaged, record.Incomplete):
            pass


def _pread(self: Log, segment: int, size: int, offset: int, recheck: bool = True) -> bytes:
    # Under the lock: another thread may evict and close a cached descriptor otherwise.
    with self._read_lock:
        try:
            fd = _read_fd(self, segment, recheck)
        except FileNotFoundError as exc:
            raise CorruptRecord(f"log segment {self.path(segment)} is missing",
                                path=self.path(segment)) from exc
        return os.pread(fd, size, offset)


